import pytest

from ctr.process import InitFailure
from ctr.users import resolve_user


@pytest.fixture
def root(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\nwww:x:33:\nstaff:x:50:www,bob\n")
    return str(tmp_path)


@pytest.mark.parametrize("user,expected", [
    (None, (0, 0, [0], "/root")),
    ("www", (33, 33, [33, 50], "/var/www")),
    ("33", (33, 33, [33, 50], "/var/www")),
    ("www:root", (33, 0, [0, 50], "/var/www")),
    ("1000", (1000, 0, [0], "/")),
    ("1000:1000", (1000, 1000, [1000], "/")),
    ("www:staff", (33, 50, [50], "/var/www")),
])
def test_resolve(root, user, expected):
    assert resolve_user(user, root) == expected


@pytest.mark.parametrize("user,match", [("ghost", "unable to find user"),
                                        ("root:ghosts", "unable to find group")])
def test_unknown(root, user, match):
    with pytest.raises(InitFailure, match=match):
        resolve_user(user, root)


def test_a_symlinked_passwd_is_read_inside_the_root(tmp_path):
    """Seen from outside (a VM's overlay from the host), /etc/passwd -> /x/passwd
    means ROOT/x/passwd, never the host's /x/passwd."""
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "passwd").write_text("evil:x:666:666::/evil:/bin/sh\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / str(outside).lstrip("/")).mkdir(parents=True)
    (root / str(outside).lstrip("/") / "passwd").write_text("evil:x:7:7::/in:/bin/sh\n")
    (root / "etc" / "passwd").symlink_to(outside / "passwd")
    assert resolve_user("evil", str(root))[:2] == (7, 7)
