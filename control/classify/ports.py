"""Well-known ports as a last, weak hint for flows no signature recognised.

Only IANA-registered or de-facto standard ports of the protocols; the confidence is low so any
payload signature, learned host or statistic wins over it.
"""

from __future__ import annotations

from .base import Flow, Label, app_label

CONFIDENCE = 0.2

# (l4, port) -> app
PORTS: dict[tuple[str, int], str] = {
    ("tcp", 80): "http", ("tcp", 8080): "http", ("tcp", 443): "tls", ("udp", 443): "quic",
    ("tcp", 53): "dns", ("udp", 53): "dns", ("udp", 5353): "mdns", ("udp", 5355): "llmnr",
    ("tcp", 853): "doh-dot", ("udp", 5060): "sip", ("tcp", 5060): "sip", ("tcp", 5061): "sip",
    ("udp", 3478): "stun", ("tcp", 3478): "stun", ("udp", 3479): "stun", ("udp", 3480): "stun",
    ("udp", 19302): "stun", ("udp", 1719): "h323", ("tcp", 1720): "h323",
    ("udp", 2427): "mgcp", ("udp", 2727): "mgcp", ("udp", 2944): "megaco", ("udp", 2945): "megaco",
    ("udp", 4569): "iax", ("tcp", 2000): "skinny", ("udp", 9987): "teamspeak",
    ("udp", 8767): "teamspeak", ("tcp", 64738): "mumble", ("udp", 64738): "mumble",
    ("tcp", 6881): "bittorrent", ("udp", 6881): "bittorrent", ("udp", 6771): "bittorrent",
    ("tcp", 6346): "gnutella", ("udp", 6346): "gnutella", ("tcp", 6347): "gnutella",
    ("udp", 1194): "openvpn", ("tcp", 1194): "openvpn", ("udp", 51820): "wireguard",
    ("udp", 500): "ipsec", ("udp", 4500): "ipsec", ("tcp", 1723): "pptp",
    ("tcp", 22): "ssh", ("tcp", 23): "telnet", ("tcp", 21): "ftp", ("tcp", 25): "smtp",
    ("tcp", 110): "pop3", ("tcp", 143): "imap", ("tcp", 993): "imaps", ("tcp", 995): "pops",
    ("tcp", 465): "smtps", ("tcp", 587): "smtp", ("udp", 123): "ntp", ("udp", 67): "dhcp",
    ("udp", 68): "dhcp", ("udp", 546): "dhcp6", ("udp", 547): "dhcp6", ("udp", 161): "snmp",
    ("udp", 162): "snmp", ("udp", 514): "syslog", ("udp", 1812): "radius",
    ("udp", 1813): "radius", ("udp", 88): "kerberos", ("tcp", 88): "kerberos",
    ("udp", 137): "netbios", ("udp", 138): "netbios", ("tcp", 139): "netbios",
    ("tcp", 445): "smbv23", ("udp", 1900): "ssdp", ("udp", 69): "tftp", ("tcp", 3389): "rdp",
    ("tcp", 5900): "vnc", ("tcp", 3306): "mysql", ("tcp", 5432): "postgresql",
    ("tcp", 1433): "mssql", ("tcp", 27017): "mongodb", ("tcp", 6379): "resp",
    ("tcp", 1883): "mqtt", ("udp", 5683): "coap", ("tcp", 179): "bgp", ("tcp", 389): "ldap",
    ("udp", 3702): "wsd", ("udp", 5351): "nat-pmp", ("tcp", 5223): "applepush", ("tcp", 554): "rtsp", ("tcp", 1935): "rtmp",
    ("tcp", 9092): "kafka", ("tcp", 2049): "nfs", ("udp", 2049): "nfs", ("udp", 3544): "teredo",
    ("udp", 5246): "capwap", ("udp", 5247): "capwap", ("udp", 6343): "sflow",
    ("udp", 2055): "netflow", ("udp", 27015): "source-engine", ("tcp", 8333): "bitcoin",
    ("tcp", 30303): "ethereum", ("udp", 30303): "ethereum", ("tcp", 22000): "syncthing",
    ("udp", 21027): "syncthing", ("tcp", 5938): "teamviewer", ("udp", 5938): "teamviewer",
    ("tcp", 7070): "anydesk", ("udp", 8801): "zoom", ("udp", 8802): "zoom",
    ("udp", 4789): "vxlan", ("udp", 2152): "gtp-u",
    ("udp", 2123): "gtp-c", ("udp", 1701): "l2tp", ("udp", 1645): "radius",
    ("udp", 1646): "radius", ("udp", 427): "slp", ("tcp", 502): "modbus",
    ("tcp", 20000): "dnp3", ("udp", 47808): "bacnet", ("tcp", 2404): "iec60870",
    ("udp", 17500): "dropbox", ("tcp", 17500): "dropbox", ("tcp", 4949): "munin",
}


def match(flow: Flow, ctx) -> Label | None:
    l4 = flow.l4
    first = next((s.payload for s in flow.samples if s.payload), b"")
    for port in (flow.sport, flow.cport):
        app = PORTS.get((l4, port))
        if app is not None:
            from .taxonomy import APP_CATEGORY

            if app not in APP_CATEGORY:
                continue
            if app == "quic" and first and not first[0] & 0x40:
                continue  # QUIC always sets the fixed bit
            lab = app_label(app, f"port:{port}", CONFIDENCE, l4=l4)
            if lab.app in ("stun", "sip", "h323", "mgcp", "megaco", "iax", "teamspeak", "mumble"):
                return Label(lab.app, "voip", CONFIDENCE, lab.reason)
            return lab
    return None
