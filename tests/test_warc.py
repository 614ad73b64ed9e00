"""WARC ingest: which records are documents, drop reasons, URLs without <...>, chunked/gzip bodies.

The WARC files are written here byte by byte (one gzip member per record, as crawlers do)."""
import gzip
import uuid
import zlib

import pytest

from curate.io.readers import _decode_body, _dechunk, warc_target_uri
from tests.conftest import prose, read_output


def page(i: int) -> bytes:
    paras = "".join(f"<p>{prose(i + k)}</p>" for k in range(4))
    return (f"<html><head><title>Page {i}</title></head><body><article><h1>Page {i}</h1>{paras}</article>"
            f"</body></html>").encode()


def record(wtype: str, uri: str | None, block: bytes, content_type: str, rid: str | None = None) -> bytes:
    head = [f"WARC-Type: {wtype}", f"WARC-Record-ID: <urn:uuid:{rid or uuid.uuid4()}>", "WARC-Date: 2024-04-25T16:27:55Z"]
    if uri is not None:
        head.append(f"WARC-Target-URI: {uri}")
    head += [f"Content-Type: {content_type}", f"Content-Length: {len(block)}"]
    return b"WARC/1.0\r\n" + "\r\n".join(head).encode() + b"\r\n\r\n" + block + b"\r\n\r\n"


def response(uri: str, body: bytes, status: str = "200 OK", ctype: str = "text/html; charset=utf-8",
             extra: str = "", rid=None) -> bytes:
    http = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode()
    return record("response", uri, http + body, "application/http; msgtype=response", rid)


def chunked(body: bytes, size: int = 100) -> bytes:
    parts = [f"{len(body[i:i + size]):x}\r\n".encode() + body[i:i + size] + b"\r\n" for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


def write_warc(path, records: list[bytes]) -> str:
    with open(path, "wb") as f:
        for r in records:
            f.write(gzip.compress(r))
    return str(path)


def test_records_reasons_and_urls(tmp_path, run):
    ids = [str(uuid.UUID(int=i)) for i in range(10)]
    records = [
        record("warcinfo", None, b"software: test\r\n", "application/warc-fields"),
        record("request", "<http://example.com/a>", b"GET /a HTTP/1.1\r\n\r\n", "application/http; msgtype=request"),
        response("<http://example.com/a>", page(0), rid=ids[0]),                           # kept, <...> removed
        response("http://example.com/b", chunked(page(1)), extra="Transfer-Encoding: chunked\r\n", rid=ids[1]),
        response("http://example.com/c", gzip.compress(page(2)), extra="Content-Encoding: gzip\r\n", rid=ids[2]),
        response("http://example.com/d", page(3), extra="Content-Encoding: gzip\r\n", rid=ids[3]),  # stored decoded
        response("http://example.com/gone", page(4), status="404 Not Found", rid=ids[4]),
        response("http://example.com/moved", b"", status="301 Moved Permanently", rid=ids[5]),
        response("http://example.com/img.png", b"\x89PNG\r\n\x1a\n", ctype="image/png", rid=ids[6]),
        response("http://example.com/empty", b"<html><body></body></html>", rid=ids[7]),
        record("metadata", "<http://example.com/a>", b"fetchTimeMs: 12\r\n", "application/warc-fields"),
        record("resource", "<metadata://wget_arguments.txt>", b"wget -r\n", "text/plain"),
    ]
    write_warc(tmp_path / "crawl.warc.gz", records)
    res = run(f"input: {tmp_path}/crawl.warc.gz\noutput: {{path: {tmp_path}/out, write_rejected: true}}\nstages: []\n")
    st = res.stats["read"]
    assert st.n_in == 8 and st.kept == 4 and st.errors == 0 and st.balanced()  # response records only
    assert st.dropped == {"not_2xx": 2, "not_html": 1, "no_extracted_text": 1}
    out = {r["id"]: r for r in read_output(tmp_path / "out").to_pylist()}
    assert sorted(out) == ids[:4]
    assert [out[i]["url"] for i in ids[:4]] == [f"http://example.com/{c}" for c in "abcd"]
    for k, i in enumerate(ids[:4]):
        assert prose(k)[:60] in out[i]["text"] and out[i]["http_status"] == 200
        assert out[i]["warc_date"] == "2024-04-25T16:27:55Z"
    assert "\n64\n" not in out[ids[1]]["text"] and not any(line.strip() == "64" for line in out[ids[1]]["text"].split("\n"))
    rejected = {r["id"]: r for r in read_output(tmp_path / "out", "rejected").to_pylist()}
    assert rejected[ids[4]]["drop_reason"] == "not_2xx" and "HTTP 404" in rejected[ids[4]]["location"]
    assert rejected[ids[6]]["drop_reason"] == "not_html" and rejected[ids[7]]["drop_reason"] == "no_extracted_text"
    assert rejected[ids[5]]["url"] == "http://example.com/moved"


@pytest.mark.parametrize("name,pack", [("cut.warc.gz", gzip.compress), ("cut.warc", lambda r: r)])
def test_truncated_warc_keeps_what_came_before_and_reports_the_rest(tmp_path, run, name, pack):
    data = b"".join(pack(response(f"http://example.com/{i}", page(i))) for i in range(3))
    (tmp_path / name).write_bytes(data[: len(data) - 200])  # the third record is cut in its payload
    res = run(f"input: {tmp_path}/{name}\noutput: {tmp_path}/out\nstages: []\n")
    st = res.stats["read"]
    assert st.n_in == 3 and st.kept == 2 and st.errors == 1 and st.balanced()
    (err,) = read_output(tmp_path / "out", "errors").to_pylist()
    assert err["file"].endswith(name) and err["location"] == "record 3" and "truncated WARC" in err["reason"]


def test_helpers():
    assert warc_target_uri("<http://a.org/x>") == "http://a.org/x" and warc_target_uri(" http://a.org/ ") == "http://a.org/"
    assert warc_target_uri(None) is None and warc_target_uri("<>") is None
    body = page(9)
    assert _dechunk(chunked(body, 7)) == body and _dechunk(chunked(body, 4096)) == body
    assert _dechunk(b"not chunked at all") == b"not chunked at all"
    raw_deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    raw_deflate = raw_deflate.compress(body) + raw_deflate.flush()
    gz = {"Content-Encoding": "gzip"}
    deflate = {"Content-Encoding": "deflate"}
    cases = [(gzip.compress(body), gz), (zlib.compress(body), deflate), (raw_deflate, deflate),
             (body, gz),  # the header kept, the body stored decoded (Common Crawl)
             (chunked(gzip.compress(body), 50), {**gz, "Transfer-Encoding": "chunked"})]
    for encoded, headers in cases:
        assert _decode_body(encoded, headers) == body, headers
    assert _decode_body(b"\x1f\x8b broken", {"Content-Encoding": "gzip"}) == b"\x1f\x8b broken"  # kept as it came
