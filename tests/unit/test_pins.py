"""Pin folder names: ns<netns inode>-<instance>-<layout fingerprint> (control/loader.py)."""

from __future__ import annotations

from xdpgate.control import loader


def test_an_instance_finds_its_own_pin_folders_never_those_of_one_whose_name_it_begins(
        tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "PIN_ROOT", tmp_path)
    ns = f"ns{loader.netns_inode(None)}"
    for name in (f"{ns}-a-0123456789", f"{ns}-a-fedcba9876", f"{ns}-a-b-0123456789",
                 f"{ns}-a-notahexfpx", "ns1-a-0123456789"):
        (tmp_path / name).mkdir()
    assert [p.name for p in loader.find_pin_dirs("a")] == [f"{ns}-a-0123456789",
                                                          f"{ns}-a-fedcba9876"]
    assert [p.name for p in loader.find_pin_dirs("a-b")] == [f"{ns}-a-b-0123456789"]
    assert len(loader.find_pin_dirs(None)) == 3  # any instance, this namespace only
    assert len(loader.fingerprint(loader.Sizes())) == 10
