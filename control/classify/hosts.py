"""Host-name and address knowledge: which app a server name or an address belongs to.

``HOST_SUFFIXES`` maps a DNS name suffix (matched on label boundaries) to an app; ``HOST_WORDS``
maps a substring of a label to an app for services that spread over many domains.  Both are
public facts about the services (their own documented domains), not tuned to any capture.
``VENDOR_PREFIXES`` lists address ranges the vendors publish for their real-time media relays.
"""

from __future__ import annotations

import ipaddress
import socket

HOST_SUFFIXES: dict[str, str] = {
    # conferencing and messaging
    "zoom.us": "zoom", "zoom.com": "zoom", "zoomgov.com": "zoom", "zoomcdn.com": "zoom",
    "teams.microsoft.com": "teams", "teams.live.com": "teams", "teams.cdn.office.net": "teams",
    "lync.com": "skype-teams", "skype.com": "skype-teams", "skypeassets.com": "skype-teams",
    "skype.net": "skype-teams", "skypeforbusiness.com": "skype-teams",
    "teams.skype.com": "teams", "trouter.teams.microsoft.com": "teams",
    "whatsapp.net": "whatsapp", "whatsapp.com": "whatsapp", "wa.me": "whatsapp",
    "telegram.org": "telegram", "t.me": "telegram", "telegram.me": "telegram",
    "telesco.pe": "telegram", "tdesktop.com": "telegram",
    "signal.org": "signal", "whispersystems.org": "signal", "signal.art": "signal",
    "discord.com": "discord", "discord.gg": "discord", "discordapp.com": "discord",
    "discordapp.net": "discord", "discord.media": "discord",
    "webex.com": "webex", "wbx2.com": "webex", "ciscospark.com": "webex",
    "viber.com": "viber", "meet.google.com": "google-meet",
    "wechat.com": "wechat", "weixin.qq.com": "wechat", "wx.qq.com": "wechat",
    "qq.com": "qq", "qpic.cn": "qq", "line.me": "line", "line-scdn.net": "line",
    "line-apps.com": "line", "naver.jp": "line", "kakao.com": "kakaotalk",
    "kakaocdn.net": "kakaotalk", "slack.com": "slack", "slack-edge.com": "slack",
    "slack-msgs.com": "slack", "threema.ch": "threema", "messenger.com": "facebookmessenger",
    "imo.im": "imo", "snapchat.com": "snapchat", "snap-dev.net": "snapchat",
    "sc-cdn.net": "snapchat", "mumble.info": "mumble", "teamspeak.com": "teamspeak",
    "office.com": "microsoft365", "office.net": "microsoft365", "office365.com": "microsoft365",
    "sharepoint.com": "microsoft365", "onenote.com": "microsoft365",
    "agora.io": "agora-sd-rtn", "sd-rtn.com": "agora-sd-rtn",
    # streaming
    "youtube.com": "youtube", "googlevideo.com": "youtube", "ytimg.com": "youtube",
    "youtu.be": "youtube", "youtube-nocookie.com": "youtube", "yt3.ggpht.com": "youtube",
    "netflix.com": "netflix", "nflxvideo.net": "netflix", "nflximg.net": "netflix",
    "nflxext.com": "netflix", "nflxso.net": "netflix", "nflximg.com": "netflix",
    "spotify.com": "spotify", "scdn.co": "spotify", "spotifycdn.com": "spotify",
    "twitch.tv": "twitch", "ttvnw.net": "twitch", "jtvnw.net": "twitch",
    "1kxun.com": "1kxun", "kxun.com": "1kxun", "1kxun.mobi": "1kxun",
    "dailymotion.com": "dailymotion",
    "dazn.com": "dazn", "dca-ent.com": "dazn", "hulu.com": "hulu", "hbo.com": "hbo",
    "hbomax.com": "hbo", "disneyplus.com": "disneyplus", "vimeo.com": "vimeo",
    "soundcloud.com": "soundcloud", "deezer.com": "deezer", "pandora.com": "pandora",
    "pluralsight.com": "pluralsight", "tidal.com": "tidal", "primevideo.com": "amazonvideo",
    "aiv-cdn.net": "amazonvideo", "tv.apple.com": "appletvplus",
    "itunes.apple.com": "appleitunes", "music.apple.com": "appleitunes",
    # web
    "google.com": "google", "gstatic.com": "google",
    "googleapis.com": "googleservices", "googleusercontent.com": "google",
    "googlesyndication.com": "google", "googletagmanager.com": "google",
    "google-analytics.com": "google", "googleadservices.com": "google",
    "doubleclick.net": "google", "gvt1.com": "google", "gvt2.com": "google",
    "ggpht.com": "google", "android.com": "google", "clients.google.com": "googleservices",
    "play.googleapis.com": "playstore", "play.google.com": "playstore",
    "drive.google.com": "googledrive", "docs.google.com": "googledocs",
    "maps.google.com": "googlemaps", "mail.google.com": "gmail", "gmail.com": "gmail",
    "chat.google.com": "googlechat", "classroom.google.com": "googleclassroom",
    "cloud.google.com": "googlecloud", "appspot.com": "googlecloud",
    "facebook.com": "facebook", "fbcdn.net": "facebook", "facebook.net": "facebook",
    "fbsbx.com": "facebook", "fb.com": "facebook", "instagram.com": "instagram",
    "cdninstagram.com": "instagram", "amazon.com": "amazon",
    "media-amazon.com": "amazon",
    "ssl-images-amazon.com": "amazon", "images-amazon.com": "amazon",
    "amazonaws.com": "amazonaws", "cloudfront.net": "amazonaws", "a2z.com": "amazon",
    "alexa.amazon.com": "amazonalexa", "amazonalexa.com": "amazonalexa",
    "microsoft.com": "microsoft", "msn.com": "microsoft", "live.com": "microsoft",
    "bing.com": "microsoft", "msftconnecttest.com": "microsoft", "windows.com": "microsoft",
    "windows.net": "azure", "azure.com": "azure", "azureedge.net": "azure",
    "windowsupdate.com": "windowsupdate", "update.microsoft.com": "windowsupdate",
    "onedrive.com": "ms-onedrive", "onedrive.live.com": "ms-onedrive", "1drv.com": "ms-onedrive",
    "outlook.com": "outlook", "hotmail.com": "outlook",
    "apple.com": "apple", "icloud.com": "appleicloud", "mzstatic.com": "apple",
    "apple-cloudkit.com": "appleicloud", "push.apple.com": "applepush",
    "reddit.com": "reddit", "redd.it": "reddit", "redditmedia.com": "reddit",
    "redditstatic.com": "reddit", "twitter.com": "twitter", "twimg.com": "twitter",
    "x.com": "twitter", "t.co": "twitter", "tiktok.com": "tiktok", "tiktokcdn.com": "tiktok",
    "tiktokv.com": "tiktok", "byteoversea.com": "tiktok", "ibyteimg.com": "tiktok",
    "tumblr.com": "tumblr", "linkedin.com": "linkedin", "licdn.com": "linkedin",
    "pinterest.com": "pinterest", "pinimg.com": "pinterest", "wikipedia.org": "wikipedia",
    "wikimedia.org": "wikipedia", "yahoo.com": "yahoo", "yimg.com": "yahoo",
    "yandex.ru": "yandex", "yandex.net": "yandex", "yandex.com": "yandex",
    "ebay.com": "ebay", "ebayimg.com": "ebay", "dropbox.com": "dropbox",
    "dropboxapi.com": "dropbox", "dropboxstatic.com": "dropbox", "github.com": "github",
    "githubusercontent.com": "github", "gitlab.com": "gitlab", "cloudflare.com": "cloudflare",
    "sina.com.cn": "sina", "sinaimg.cn": "sina", "sina.cn": "sina", "weibo.com": "sinaweibo",
    "weibo.cn": "sinaweibo", "alicdn.com": "alibaba", "alibaba.com": "alibaba",
    "aliyuncs.com": "alicloud", "aliyun.com": "alicloud", "taobao.com": "alibaba",
    "xiaomi.com": "xiaomi", "mi.com": "xiaomi", "xiaomi.net": "xiaomi", "miui.com": "xiaomi",
    "huawei.com": "huawei", "hicloud.com": "huaweicloud", "tencent.com": "tencent",
    "gtimg.com": "tencent", "vk.com": "vk", "vk.me": "vk", "userapi.com": "vk",
    "cnn.com": "cnn", "accuweather.com": "accuweather", "badoo.com": "badoo",
    "salesforce.com": "salesforce", "nvidia.com": "nvidia", "bsky.app": "bluesky",
    "threads.net": "threads", "waze.com": "waze", "crashlytics.com": "crashlytics",
    "nest.com": "nestlogsink", "ookla.com": "ookla", "speedtest.net": "ookla",
    "ocsp.digicert.com": "ocsp", "ocsp.pki.goog": "ocsp", "ocsp.sectigo.com": "ocsp",
    "ocsp.apple.com": "ocsp", "ocsp.msocsp.com": "ocsp",
    "worldofwarcraft.com": "worldofwarcraft",
    # dns over https/tls
    "dns.google": "doh-dot", "cloudflare-dns.com": "doh-dot", "dns.quad9.net": "doh-dot",
    "doh.opendns.com": "doh-dot", "dns.nextdns.io": "doh-dot", "mozilla.cloudflare-dns.com":
    "doh-dot", "dns.adguard.com": "doh-dot", "doh.cleanbrowsing.org": "doh-dot",
    # vpn
    "tunnelbear.com": "tunnelbear", "nordvpn.com": "nordvpn", "nordcdn.com": "nordvpn",
    "protonvpn.com": "protonvpn", "surfshark.com": "surfshark",
    "windscribe.com": "windscribe", "mullvad.net": "mullvad", "hotspotshield.com": "hotspotshield",
    "tailscale.com": "tailscale", "tailscale.io": "tailscale", "opera-proxy.net": "operavpn",
    "psiphon.ca": "psiphon", "fortinet.com": "forticlient", "forticlient.com": "forticlient",
    "privateinternetaccess.com": "privateinternetaccess", "cactusvpn.com": "cactusvpn",
    # games
    "steampowered.com": "steam", "steamcommunity.com": "steam", "steamcontent.com": "steam",
    "steamstatic.com": "steam", "valvesoftware.com": "steam", "riotgames.com": "riotgames",
    "leagueoflegends.com": "riotgames", "riotcdn.net": "riotgames", "epicgames.com": "epicgames",
    "unrealengine.com": "epicgames", "epicgames.dev": "epicgames", "ea.com": "electronicarts",
    "origin.com": "electronicarts", "activision.com": "activision", "callofduty.com": "activision",
    "nintendo.net": "nintendo", "nintendo.com": "nintendo", "playstation.net": "playstation",
    "playstation.com": "playstation", "xboxlive.com": "xbox", "xbox.com": "xbox",
    "roblox.com": "roblox", "rbxcdn.com": "roblox", "tocaboca.com": "tocaboca",
    "gaijin.net": "gaijinentertainment", "warthunder.com": "gaijinentertainment",
    "mihoyo.com": "genshinimpact", "hoyoverse.com": "genshinimpact", "blizzard.com": "worldofwarcraft",
    "battle.net": "worldofwarcraft", "i3d.net": "i3d",
    # cdns and trackers
    "edgecastcdn.net": "edgecast", "cachefly.net": "cachefly",
    "scorecardresearch.com": "ads-analytic-track", "app-measurement.com": "ads-analytic-track",
    "adjust.com": "ads-analytic-track", "appsflyer.com": "ads-analytic-track",
    "branch.io": "ads-analytic-track",
    "polargrizzly.com": "tunnelbear", "ntop.org": "ntop", "dazn-api.com": "dazn",
    "indazn.com": "dazn", "microsoftonline.com": "microsoft365", "dingtalk.com": "dingtalk",
    "gaijinent.com": "gaijinentertainment", "crossout.net": "gaijinentertainment",
    "nvidiagrid.net": "geforcenow", "geforcenow.com": "geforcenow", "dota2.com": "dota2",
    "steamserver.net": "steam", "microsoftstream.com": "skype-teams", "zattoo.com": "zattoo",
    "vpn-api.proton.me": "protonvpn", "simplednscrypt.org": "dnscrypt",
    "mqtt-mini.facebook.com": "facebookmessenger", "edge-mqtt.facebook.com": "facebookmessenger",
    "dnscrypt.info": "dnscrypt",
}

# The vendors' country domains (google.de, google.co.jp, amazon.co.uk, ...).
COUNTRY_DOMAINS: tuple[tuple[str, str], ...] = (
    (r"(^|\.)google\.(com?\.)?[a-z]{2}$", "google"),
    (r"(^|\.)amazon\.(com?\.)?[a-z]{2}$", "amazon"),
)

# Name shapes that say what a server is whatever its domain: DNS-over-HTTPS/TLS resolvers are
# conventionally named doh.* / dns.* / dnsN.*. Only a name the client asked a server for (TLS
# SNI, QUIC) says that much: a name from a DNS answer may be any host called dns1.
HOST_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"^(doh|dot)[0-9-]*\.|\.doh\.", "doh-dot"),
    (r"^dns[0-9]*\.[^.]+\.[^.]+", "doh-dot"),
    (r"^resolver[0-9]*(-[a-z]{2})?[0-9]*\.[^.]+\.[^.]+", "doh-dot"),
)

# A label containing one of these words (e.g. "whatsapp-cdn-shv-01-mxp1") names the app.
HOST_WORDS: tuple[tuple[str, str], ...] = (
    ("whatsapp", "whatsapp"), ("googlevideo", "youtube"), ("youtube", "youtube"),
    ("nflxvideo", "netflix"), ("netflix", "netflix"), ("fbcdn", "facebook"),
    ("facebook", "facebook"), ("instagram", "instagram"), ("telegram", "telegram"),
    ("spotify", "spotify"), ("skype", "skype-teams"), ("pluralsight", "pluralsight"),
    ("tiktok", "tiktok"), ("twitch", "twitch"), ("dropbox", "dropbox"),
)

# Address ranges the vendors publish for their real-time media / relay servers.
VENDOR_PREFIXES: dict[str, str] = {
    # Telegram's published list (core.telegram.org/resources/cidr.txt)
    "91.108.4.0/22": "telegram", "91.108.8.0/22": "telegram", "91.108.12.0/22": "telegram",
    "91.108.16.0/22": "telegram", "91.108.20.0/22": "telegram", "91.108.56.0/22": "telegram",
    "91.105.192.0/23": "telegram", "149.154.160.0/20": "telegram", "185.76.151.0/24": "telegram",
    "95.161.64.0/20": "telegram", "2001:67c:4e8::/48": "telegram",
    "2001:b28:f23c::/47": "telegram", "2001:b28:f23f::/48": "telegram", "2a0a:f280::/32": "telegram",
    # Microsoft 365 endpoints, Teams media (ID 11)
    "13.107.64.0/18": "skype-teams", "52.112.0.0/14": "skype-teams", "52.122.0.0/15": "skype-teams",
    "2603:1063::/38": "skype-teams",
    "66.22.192.0/18": "discord",
    "3.7.35.0/25": "zoom", "3.21.137.128/25": "zoom", "3.22.11.0/24": "zoom",
    "144.195.0.0/16": "zoom", "170.114.0.0/16": "zoom", "206.247.0.0/16": "zoom",
    "221.122.88.64/27": "zoom", "8.5.128.0/23": "zoom",
    "31.13.64.0/18": "whatsapp", "157.240.0.0/16": "whatsapp", "179.60.192.0/22": "whatsapp",
    "185.60.216.0/22": "whatsapp", "2a03:2880::/32": "whatsapp",
}


def app_for_host(name: str, shapes: bool = True) -> str | None:
    """The app a host name belongs to, by suffix on label boundaries, then by word, then (with
    ``shapes``: a name a client asked for) by name shape."""
    if not name:
        return None
    name = name.lower().rstrip(".")
    parts = name.split(".")
    for i in range(len(parts) - 1):
        app = HOST_SUFFIXES.get(".".join(parts[i:]))
        if app is not None:
            return None if app == "unknown" else app
    for word, app in HOST_WORDS:
        if word in name:
            return app
    import re

    for pat, app in COUNTRY_DOMAINS + (HOST_PATTERNS if shapes else ()):
        if re.search(pat, name):
            return app
    return None


def _addr_int(addr: str) -> tuple[int, int] | None:
    """(4 or 6, address as an integer) of a textual address, None if it is not one."""
    try:
        if ":" in addr:
            return 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, addr.split("%", 1)[0]),
                                     "big")
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, addr), "big")
    except (OSError, ValueError):
        return None


class _PrefixTable:
    """Longest-prefix match over integer addresses: per IP version, one dict per prefix
    length (network integer -> app), lengths tried longest first; a bounded LRU of answers."""

    CACHE_MAX = 65536

    def __init__(self) -> None:
        self.nets: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
        self._by_len: dict[int, list[tuple[int, int, dict[int, str]]]] = {4: [], 6: []}
        self.cache: dict[str, str | None] = {}

    def add(self, cidr: str, app: str) -> None:
        net = ipaddress.ip_network(cidr, strict=False)
        self.nets.append((net, app))
        self.nets.sort(key=lambda na: -na[0].prefixlen)  # longest prefix first
        bits = net.max_prefixlen
        tables = {plen: tbl for plen, _shift, tbl in self._by_len[net.version]}
        tbl = tables.setdefault(net.prefixlen, {})
        # the first (longest, then earliest) entry for a network wins, as in a linear scan
        tbl.setdefault(int(net.network_address) >> (bits - net.prefixlen), app)
        self._by_len[net.version] = [(plen, bits - plen, t) for plen, t in
                                     sorted(tables.items(), key=lambda pt: -pt[0])]
        self.cache.clear()

    def lookup(self, addr: str) -> str | None:
        cache = self.cache
        try:
            found = cache.pop(addr)  # hit: move to the young end
            cache[addr] = found
            return found
        except KeyError:
            pass
        vi = _addr_int(addr)
        if vi is None:
            return None
        found = None
        version, n = vi
        for _plen, shift, tbl in self._by_len[version]:
            found = tbl.get(n >> shift)
            if found is not None:
                break
        if len(cache) >= self.CACHE_MAX:
            del cache[next(iter(cache))]  # least recently used
        cache[addr] = found
        return found


class HostKnowledge:
    """What the classifier knows about addresses: names from DNS answers and SNI/Host seen
    on the link, plus operator-supplied host-suffix and address-prefix lists."""

    MAX_NAMES = 200_000

    def __init__(self, *, builtin_prefixes: bool = True) -> None:
        self.names: dict[str, str] = {}  # address -> last name seen for it
        self._host_apps: dict[str, str] = {}  # operator name suffix -> app
        self._prefixes = _PrefixTable()
        self._builtin = _PrefixTable()
        if builtin_prefixes:
            for cidr, app in VENDOR_PREFIXES.items():
                self._builtin.add(cidr, app)

    def add_hosts(self, mapping: dict[str, str]) -> None:
        """Operator list: host-name suffix -> app (checked before the built-in table)."""
        for suffix, app in mapping.items():
            self._host_apps[suffix.lower().strip(".")] = app

    def add_ip_prefixes(self, mapping: dict[str, str]) -> None:
        """Operator list: CIDR -> app."""
        for cidr, app in mapping.items():
            self._prefixes.add(cidr, app)

    def learn_name(self, addr: str, name: str) -> None:
        """Tie ``addr`` to ``name`` (from a DNS answer, a TLS SNI or an HTTP Host)."""
        if not name or not addr:
            return
        if len(self.names) >= self.MAX_NAMES:
            self.names.clear()
        self.names[addr] = name.lower().rstrip(".")

    def app_for_name(self, name: str, shapes: bool = True) -> str | None:
        if self._host_apps:
            parts = name.lower().rstrip(".").split(".")
            for i in range(len(parts)):
                app = self._host_apps.get(".".join(parts[i:]))
                if app:
                    return app
        return app_for_host(name, shapes)

    def app_for_addr(self, addr: str) -> tuple[str, str] | None:
        """(app, how) for an address: operator prefix, learned name, or vendor range."""
        app = self._prefixes.lookup(addr) if self._prefixes.nets else None
        if app:
            return app, "ip-list"
        name = self.names.get(addr)
        if name:
            app = self.app_for_name(name, shapes=False)
            if app:
                return app, f"dns:{name}"
        app = self._builtin.lookup(addr)
        if app:
            return app, "vendor-range"
        return None
