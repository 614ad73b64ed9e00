"""URL normalization (the keys of url_dedup): IDNA, percent-encoding, dot segments, IPv6, ports."""
import pytest

from curate.stages.url_dedup import normalize_url, remove_dot_segments
from tests.conftest import prose, read_output, write_jsonl


def n(url):
    return normalize_url(url, ignore_scheme=False)


@pytest.mark.parametrize("a,b", [
    ("http://bücher.de/x", "http://xn--bcher-kva.de/x"),                    # IDNA: unicode host -> punycode
    ("http://BÜCHER.de/x", "http://xn--bcher-kva.de/x"),
    ("http://b%C3%BCcher.de/x", "http://xn--bcher-kva.de/x"),               # a percent-encoded unicode host
    ("http://example.com/a%3ab", "http://example.com/a%3Ab"),               # percent-encoding case
    ("http://example.com/%7Euser/%41%2d", "http://example.com/~user/A-"),  # encoded unreserved chars decoded
    ("http://example.com/café", "http://example.com/caf%C3%A9"),            # a raw non-ASCII path encoded
    ("http://example.com/a b", "http://example.com/a%20b"),
    ("http://example.com/a/./b/../c", "http://example.com/a/c"),            # dot segments
    ("http://example.com/a/%2E%2E/c", "http://example.com/c"),
    ("http://example.com/../../a", "http://example.com/a"),
    ("http://[0:0:0:0:0:0:0:1]:8080/x", "http://[::1]:8080/x"),            # IPv6 host
    ("http://[2001:DB8::1]/x", "http://[2001:db8::1]/x"),
    ("http://[::1]:80/x", "http://[::1]/x"),                                # default port
    ("https://example.com:443/x", "https://example.com/x"),
    ("http://example.com./x", "http://example.com/x"),                      # trailing dot of the FQDN
    ("<http://example.com/x>", "http://example.com/x"),                    # WARC-Target-URI in brackets
    ("http://user:pw@Example.com/x#frag", "http://example.com/x"),          # user info, fragment
    ("http://example.com/x?b=2&a=%3a&utm_source=z", "http://example.com/x?a=%3A&b=2"),
])
def test_same_resource_same_key(a, b):
    assert n(a) == n(b)


@pytest.mark.parametrize("a,b", [
    ("http://example.com/A", "http://example.com/a"),          # paths keep their case
    ("http://example.com/a%2Fb", "http://example.com/a/b"),    # an encoded reserved char is not decoded
    ("http://example.com:8080/x", "http://example.com/x"),     # a port that is not the default
    ("http://[::1]/x", "http://[::2]/x"),
    ("http://example.com/x?a=1", "http://example.com/x?a=2"),
])
def test_different_resources_differ(a, b):
    assert n(a) != n(b)


def test_exact_forms():
    assert n("HTTP://WWW.Bücher.DE:80/a/./b/../%7ec%3a?x=1#top") == "http://xn--bcher-kva.de/a/~c%3A?x=1"
    assert n("http://[::FFFF:1.2.3.4]/") == "http://[::ffff:102:304]"
    assert normalize_url("https://example.com/x") == "//example.com/x"  # the scheme is ignored by default
    assert remove_dot_segments("/a/b/c/./../../g") == "/a/g" and remove_dot_segments("/a/b/..") == "/a/"
    assert remove_dot_segments("mid/content=5/../6") == "mid/6"


@pytest.mark.parametrize("bad,why", [
    ("http://example.com:99999/x", "Port out of range"),
    ("http://example.com:abc/x", "Port could not be cast"),
    ("http://[::1/x", "Invalid IPv6 URL"),
    ("http://[::zz]/x", "IPv6"),
    ("http://" + "ü" * 70 + ".com/x", "invalid host"),  # a label over 63 characters
])
def test_bad_urls_raise_a_clear_error(bad, why):
    with pytest.raises(ValueError, match=why):
        n(bad)


def test_url_dedup_unifies_variants_and_sends_bad_urls_to_errors(tmp_path, run):
    urls = ["http://bücher.de/a/./b", "HTTP://xn--bcher-kva.de:80/a/b/", "http://b%C3%BCcher.de/a/c/../b#x",
            "http://[::1]/%7e", "http://[0::1]/~", "http://example.com:99999/", None]
    write_jsonl(tmp_path / "a.jsonl", [{"id": f"d{i}", "text": prose(i), "url": u} for i, u in enumerate(urls)])
    res = run(f"input: {tmp_path}/a.jsonl\noutput: {tmp_path}/out\nstages:\n  - url_dedup: {{}}\n")
    st = res.stats["url_dedup"]
    assert st.dropped == {"url_duplicate": 3} and st.errors == 1 and st.balanced()
    assert sorted(read_output(tmp_path / "out").column("id").to_pylist()) == ["d0", "d3", "d6"]
    (err,) = read_output(tmp_path / "out", "errors").to_pylist()
    assert err["id"] == "d5" and "Port out of range" in err["reason"]
