"""``service.api.forms.parse_form`` against python-multipart, the parser FastAPI uses.

Generated bodies are read by both. Where the two disagree the service follows RFC 7578
(multipart/form-data) and RFC 2046 (the multipart syntax); each such case is a named test below,
saying which side is right and why, and the property test expects the service's side of it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import FormParser, MultipartState, parse_options_header

from service.api.forms import Form, parse_form
from service.engine.errors import RequestError
from service.engine.imaging import Upload

EXAMPLES = settings(max_examples=300, derandomize=True, database=None, deadline=None)


# -- python-multipart's reading, in the shape of parse_form's answer ---------------------------


@dataclass
class Reading:
    """python-multipart's answer: a form or an error code, and whether it saw the whole body."""

    answer: Form | str
    complete: bool


def reference(body: bytes, content_type: str) -> Reading:
    """Read ``body`` with python-multipart's ``FormParser``, then apply the service's own rules
    to its parts: a part is a file when it has a filename or a media type other than ``text/*``
    (RFC 7578 4.2, 4.4); a text field is UTF-8; a field name given twice is refused (422)."""
    media, params = parse_options_header(content_type)
    parts: list = []
    parser = FormParser(media.decode(), parts.append, parts.append, boundary=params[b"boundary"])
    try:
        parser.write(body)
        parser.finalize()
    except FormParserError:
        return Reading("invalid_form", parser.parser.state == MultipartState.END)
    return Reading(_as_form(parts), parser.parser.state == MultipartState.END)


def _as_form(parts: list) -> Form | str:
    form, repeated = Form({}, {}), False
    for part in parts:
        name = part.field_name.decode("utf-8", "replace")
        media = parse_options_header(part.content_type or "text/plain")[0]
        filename = getattr(part, "file_name", None)
        if filename is not None or not media.startswith(b"text/"):
            data = part.file_object.getvalue() if filename is not None else part.value
            upload = Upload(data, part.content_type, (filename or b"").decode() or None)
            form.files.setdefault(name, []).append(upload)
            continue
        try:
            value = part.value.decode("utf-8")
        except UnicodeDecodeError:
            return "invalid_form"
        repeated |= name in form.fields
        form.fields[name] = value
    return "invalid_parameters" if repeated else form


def service(body: bytes, content_type: str) -> Form | str:
    try:
        return parse_form(body, content_type)
    except RequestError as err:
        return err.code


# -- generated bodies --------------------------------------------------------------------------

TOKEN = "abcxyzABCXYZ0189'+_-."
BCHARS = TOKEN + "(),/:=? "
ENCODINGS = {"base64", "quoted-printable"}  # the transfer encodings python-multipart decodes
NAMES = ["file", "layer", "k", "名前", "a b", "semi;colon", 'say "hi"', ""]


@dataclass
class Body:
    """A generated body, its type, and what it holds that the two parsers read differently."""

    data: bytes
    content_type: str
    read: bytes  # what python-multipart reads as the service reads data: no preamble, no
    # padding after the first boundary, a blank line after headers alone (named tests below)
    quirks: set[str] = field(default_factory=set)


def _one_in(n: int) -> st.SearchStrategy[bool]:
    return st.sampled_from([False] * (n - 1) + [True])


def _case(draw, word: str) -> str:
    return draw(st.sampled_from([word, word.lower(), word.upper(), word.swapcase()]))


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def boundaries(draw) -> tuple[bytes, str]:
    """A boundary (RFC 2046 5.1.1: 1 to 70 bchars, not ending in a space) and its parameter."""
    value = draw(st.text(BCHARS, min_size=1, max_size=70).filter(lambda b: not b.endswith(" ")))
    needs_quotes = any(c not in TOKEN for c in value)
    quoted = needs_quotes or draw(st.booleans())
    param = _quote(value) if quoted else value
    content_type = f"{_case(draw, 'multipart/form-data')}; {_case(draw, 'boundary')}={param}"
    if draw(st.booleans()):
        content_type += "; charset=utf-8"
    return value.encode(), content_type


def _chunks(boundary: bytes) -> st.SearchStrategy[bytes]:
    """Bytes rich in what a parser must not mistake for a delimiter."""
    near = [b"\r\n", b"\r", b"\n", b"-", b"--", b"--" + boundary, b"\r\n-" + boundary]
    near += [b"\r\n--" + boundary[:cut] for cut in range(len(boundary))]
    pieces = st.sampled_from([*near, b"a", b"7", "é".encode(), b"\xff", b"\x00", b" "])
    return st.lists(pieces, max_size=8).map(b"".join)


@st.composite
def disposition(draw, name: str, quirks: set[str]) -> bytes:
    kind = _case(draw, "form-data")
    if draw(_one_in(20)):
        kind = draw(st.sampled_from(["attachment", "inline"]))
        quirks.add("disposition")
    shown = name if name and all(c in TOKEN for c in name) and draw(st.booleans()) else None
    params = [f"{_case(draw, 'name')}={shown or _quote(name)}"]
    filename = draw(st.sampled_from([None] * 4 + ["x.png", "", "名.png", "C:\\dir\\x.png"]))
    if filename is not None:
        params.append(f"{_case(draw, 'filename')}={_quote(filename)}")
    if draw(_one_in(5)):  # RFC 5987 / 2231 forms
        params.append(draw(st.sampled_from(["filename*=UTF-8''%E5%90%8D.png", "name*0=x"])))
    draw(st.randoms()).shuffle(params)
    return f"{kind}; {'; '.join(params)}".encode()


@st.composite
def part(draw, boundary: bytes, quirks: set[str]) -> tuple[bytes, bytes, bytes]:
    """One body part: what follows the boundary on its delimiter line, the rest (the line
    break, header lines, blank line and data), and the rest as python-multipart reads it."""
    padding = draw(st.sampled_from([b""] * 12 + [b" ", b"\t ", b"x", b"-x"]))
    if padding.strip(b" \t"):
        quirks.add("after boundary")
    headers = []
    if not draw(_one_in(20)):
        name = draw(st.sampled_from(NAMES))
        value = draw(disposition(name, quirks))
        headers.append((_case(draw, "Content-Disposition"), value))
    media = draw(st.sampled_from([None, "text/plain", "Text/Plain; charset=UTF-8", "image/png"]))
    if media:
        headers.append((_case(draw, "Content-Type"), media.encode()))
    coding = draw(st.sampled_from([None] * 20 + ["binary", "8bit", "base64", "quoted-printable"]))
    if coding:
        headers.append(("Content-Transfer-Encoding", coding.encode()))
    if coding in ENCODINGS:
        quirks.add(coding)
    if draw(_one_in(6)):
        headers.append(("X-Extra", b"1"))
    draw(st.randoms()).shuffle(headers)
    colon = draw(st.sampled_from([b": ", b":", b":\t", b":  "]))
    eol = draw(st.sampled_from([b"\r\n"] * 9 + [b"\n"]))
    if headers and eol == b"\n":
        quirks.add("bare line feed")
    head = b"".join(name.encode() + colon + value + eol for name, value in headers)
    data = draw(_chunks(boundary).filter(lambda d: b"\r\n--" + boundary not in b"\r\n" + d))
    if coding == "base64":
        data = base64.b64encode(data)
    blank = draw(st.sampled_from([b"\r\n"] * 8 + [b"", b"\r\n\r\n"]))
    rest = b"\r\n" + head + blank + data + b"\r\n"
    if head and not blank and not data:  # a part of headers alone, which python-multipart
        return padding, rest, rest + b"\r\n"  # reads as the same part with a blank line
    return padding, rest, rest


@st.composite
def bodies(draw) -> Body:
    boundary, content_type = draw(boundaries())
    delimiter = b"\r\n--" + boundary
    quirks: set[str] = set()
    preamble = draw(_chunks(boundary).filter(lambda p: delimiter not in b"\r\n" + p + b"\r\n"))
    preamble += b"\r\n" if preamble else b""
    parts = draw(st.lists(part(boundary, quirks), max_size=4))
    closing = b"--" + boundary + b"--"
    epilogue = draw(st.sampled_from([b"", b"\r\n", b"\r\nafter"])) + draw(_chunks(boundary))
    data = preamble + b"".join(b"--" + boundary + pad + rest for pad, rest, _ in parts) + closing
    # python-multipart reads the padding of every delimiter line but the first
    unpadded = [(b"" if i == 0 else pad, read) for i, (pad, _, read) in enumerate(parts)]
    read = b"".join(b"--" + boundary + pad + rest for pad, rest in unpadded) + closing
    if draw(_one_in(8)):
        data = data[: draw(st.integers(0, len(data) - 1))]
        quirks.add("truncated")
    else:
        data, read = data + epilogue, read + epilogue
    return Body(data, content_type, read, quirks)


# -- the property -------------------------------------------------------------------------------

# what the service refuses and python-multipart reads: see the named tests below
REFUSED = {"truncated", "disposition", "after boundary", "bare line feed", *ENCODINGS}


def expected(body: Body) -> Form | str:
    """python-multipart's answer to the body as it can read it, or a 400 where the service
    refuses what python-multipart reads (each case a named test below)."""
    if body.quirks & REFUSED:
        return "invalid_form"
    reading = reference(body.read, body.content_type)
    assert reading.complete or reading.answer == "invalid_form"
    return reading.answer


@EXAMPLES
@given(bodies())
def test_the_service_reads_generated_bodies_as_python_multipart_does(body):
    assert service(body.data, body.content_type) == expected(body)


# -- where the two disagree, and why the service's side is the right one -----------------------

CT = "multipart/form-data; boundary=XyZ"
FIELD = b'--XyZ\r\nContent-Disposition: form-data; name="k"\r\n\r\n3\r\n'


def test_white_space_may_follow_the_first_boundary():
    """RFC 2046 5.1.1: every delimiter line, the first too, is "dash-boundary transport-padding
    CRLF" (padding: linear white space that gateways add). python-multipart takes it after
    the boundaries that follow the first only."""
    body = FIELD.replace(b"XyZ", b"XyZ \t", 1) + b"--XyZ--"
    assert reference(body, CT).answer == "invalid_form"
    assert service(body, CT) == Form({"k": "3"}, {})


def test_a_part_may_end_with_its_headers():
    """RFC 2046 5.1.1: ``body-part := MIME-part-headers [CRLF *OCTET]``: the line break that ends
    the last header line may be followed at once by the next delimiter, "CRLF --boundary", and
    the part's value is empty. python-multipart takes that line break for the blank line and
    reads on, the delimiter line and what follows it as the part's data."""
    head = b'--XyZ\r\nContent-Disposition: form-data; name="e"\r\n\r\n'
    body = head + FIELD + b"--XyZ--"
    assert reference(body, CT).answer == Form({"e": FIELD.decode()[:-2]}, {})
    assert service(body, CT) == Form({"e": "", "k": "3"}, {})


def test_a_preamble_is_ignored():
    """RFC 2046 5.1.1: text before the first delimiter line is a preamble, to be ignored.
    python-multipart refuses any preamble but line breaks."""
    body = b"This is a multipart message.\r\n" + FIELD + b"--XyZ--"
    assert reference(body, CT).answer == "invalid_form"
    assert service(body, CT) == Form({"k": "3"}, {})


@pytest.mark.parametrize("cut", [len(FIELD), len(FIELD) + 6, len(FIELD) - 3])
def test_a_body_without_its_close_delimiter_is_refused(cut):
    """RFC 2046 5.1.1: a multipart body ends with the close delimiter; without it the body is
    truncated, and its last part may be too. python-multipart answers with the parts it has
    read to their end, silently."""
    body = (FIELD + b"--XyZ--")[:cut]
    assert reference(body, CT).answer in (Form({"k": "3"}, {}), Form({}, {}))
    assert service(body, CT) == "invalid_form"


@pytest.mark.parametrize("kind", ["attachment", "inline", "x-form-data"])
def test_a_disposition_other_than_form_data_is_refused(kind):
    """RFC 7578 4.2: each part's Content-Disposition has the type "form-data".
    python-multipart reads the name whatever the type."""
    body = FIELD.replace(b"form-data", kind.encode()) + b"--XyZ--"
    assert reference(body, CT).answer == Form({"k": "3"}, {})
    assert service(body, CT) == "invalid_form"


@pytest.mark.parametrize("tail", [b"x", b"-x", b"Z"])
def test_a_delimiter_line_holds_only_the_boundary_and_white_space(tail):
    """RFC 2046 5.1.1: a line that begins with the boundary is a delimiter line ("it is
    sufficient that the boundary appear in its entirety following the CRLF"), which only linear
    white space may follow; senders pick a boundary that occurs nowhere else. A line that goes
    on is malformed: python-multipart reads it as data of the part before it."""
    line = b"--XyZ" + tail + b'\r\nContent-Disposition: form-data; name="n"\r\n\r\n4'
    body = FIELD + line + b"\r\n--XyZ--"
    assert reference(body, CT).answer == Form({"k": "3\r\n" + line.decode()}, {})
    assert service(body, CT) == "invalid_form"


@pytest.mark.parametrize("coding, data", [("base64", b"Mw=="), ("quoted-printable", b"=33")])
def test_a_content_transfer_encoding_is_refused(coding, data):
    """RFC 7578 4.7: senders do not encode parts (a Content-Transfer-Encoding header is deprecated
    and no deployed sender uses one). python-multipart decodes base64 and quoted-printable; the
    service names the header rather than read encoded bytes as the value."""
    head = f"Content-Transfer-Encoding: {coding}\r\n\r\n".encode()
    body = FIELD.replace(b"\r\n\r\n3", b"\r\n" + head + data) + b"--XyZ--"
    assert reference(body, CT).answer == Form({"k": "3"}, {})
    assert service(body, CT) == "invalid_form"


@pytest.mark.parametrize("eol", [b"\n", b"\r"])
def test_a_header_line_ends_in_crlf_only(eol):
    """RFC 5322 2.2 (which RFC 2046 part headers follow): a header field ends with CRLF, and
    neither CR nor LF occurs alone in it. python-multipart ends a header line at the next CR
    and keeps a lone LF in the value, so that two header lines read as one odd value."""
    head = b'--XyZ\r\nContent-Disposition: form-data; name="k"' + eol + b"X-Extra: 1\r\n\r\n"
    body = head + b"3\r\n--XyZ--"
    if eol == b"\n":
        assert reference(body, CT).answer == Form({'"k"\nX-Extra: 1': "3"}, {})
    assert service(body, CT) == "invalid_form"


# -- where they agree, for reasons worth stating ------------------------------------------------


def test_the_epilogue_is_ignored_even_when_it_repeats_the_boundary():
    """RFC 2046 5.1.1: after the close delimiter comes the epilogue, ignored whatever it holds."""
    body = FIELD + b"--XyZ--\r\n" + FIELD + b"--XyZ--\r\n"
    assert service(body, CT) == reference(body, CT).answer == Form({"k": "3"}, {})


def test_a_malformed_body_is_a_400_though_a_field_came_twice_before_the_fault():
    """A repeated field is a 422 of a well-formed body; a body broken anywhere is a 400."""
    nameless = b"--XyZ\r\nContent-Type: text/plain\r\n\r\n4\r\n"
    body = FIELD + FIELD + nameless + b"--XyZ--"
    assert service(body, CT) == reference(body, CT).answer == "invalid_form"
    assert service(FIELD + FIELD + b"--XyZ--", CT) == "invalid_parameters"


@pytest.mark.parametrize("sep", [b"", b"\n", b"\r", b" "])
def test_a_boundary_not_at_the_start_of_a_line_is_data(sep):
    """RFC 2046 5.1.1: a delimiter is "CRLF --boundary"; the boundary elsewhere is data."""
    body = FIELD[:-2] + sep + FIELD + b"--XyZ--"
    value = "3" + sep.decode() + FIELD.decode()[:-2]
    assert service(body, CT) == reference(body, CT).answer == Form({"k": value}, {})


def test_a_filename_star_parameter_is_ignored():
    """RFC 7578 4.2: senders do not use RFC 5987's ``filename*``; the plain ``filename`` names
    the file, and a part with only ``filename*`` has no file name."""
    head = b"Content-Disposition: form-data; name=file; filename*=UTF-8''%E5%90%8D.png"
    body = b"--XyZ\r\n" + head + b"\r\nContent-Type: image/png\r\n\r\nPNG\r\n--XyZ--"
    both = Form({}, {"file": [Upload(b"PNG", "image/png", None)]})
    assert service(body, CT) == reference(body, CT).answer == both
