"""The worker protocol's byte layout, independent of any process."""

from __future__ import annotations

import json
import struct

import pytest

from pit import _worker_protocol


def reader_over(
    data: bytes, step: int, max_frame: int = _worker_protocol.DEFAULT_MAX_FRAME
) -> _worker_protocol.FrameReader:
    """A reader that receives ``data`` at most ``step`` bytes per read."""
    chunks: list[bytes] = [data[i : i + step] for i in range(0, len(data), step)]

    def read(n: int) -> bytes:
        return chunks.pop(0) if chunks else b""

    return _worker_protocol.FrameReader(read, max_frame)


def test_call_layout_matches_the_spec_byte_for_byte():
    frame = _worker_protocol.encode_call(7, "echo", b'{"x":1}', "u-1", 5000)
    body = struct.pack(">QIBIHH", 7, 5000, 0, 0, 4, 3) + b"echo" + b"u-1" + b'{"x":1}'
    assert frame == struct.pack(">IB", 1 + len(body), 0x01) + body
    streamed = _worker_protocol.encode_call(7, "echo", b"[]", None, 0, stream=True, window=64)
    body = struct.pack(">QIBIHH", 7, 0, 0x01, 64, 4, 0) + b"echo" + b"[]"
    assert streamed == struct.pack(">IB", 1 + len(body), 0x01) + body


def test_stream_frames_match_the_spec_byte_for_byte():
    assert _worker_protocol.encode_credit(9, 3) == struct.pack(">IBQI", 13, 0x05, 9, 3)
    assert _worker_protocol.encode_chunk(9, b'{"t":1}') == struct.pack(">IBQ", 16, 0x85, 9) + b'{"t":1}'
    assert _worker_protocol.decode_credit(struct.pack(">QI", 9, 2**32 - 1)) == (9, 2**32 - 1)
    assert _worker_protocol.split_reply(struct.pack(">Q", 9) + b"1") == (9, b"1")
    for body in (b"\0" * 8, b"\0" * 13):
        with pytest.raises(_worker_protocol.FrameError, match="12-byte CREDIT body"):
            _worker_protocol.decode_credit(body)


@pytest.mark.parametrize("flags, stream", [(0, False), (1, True), (0xFF, True), (0xFE, False)])
def test_the_stream_flag_is_bit_0_and_other_bits_are_ignored(flags, stream):
    body = struct.pack(">QIBIHH", 3, 0, flags, 5, 1, 0) + b"m"
    call = _worker_protocol.decode_call(body)
    assert (call.stream, call.window, call.method, call.args) == (stream, 5, "m", b"")


def test_call_by_wraps_the_stream_fields_too():
    call = _worker_protocol.encode_call(4, "m", b"1", None, 10, stream=True, window=2)
    start_by, decoded = _worker_protocol.decode_call_by(_worker_protocol.encode_call_by(call, 99)[5:])
    assert start_by == 99 and decoded == (4, 10, "m", None, b"1", True, 2)


def test_reply_layouts_match_the_spec_byte_for_byte():
    assert _worker_protocol.encode_ok(9, b"[1]") == struct.pack(">IBQ", 12, 0x82, 9) + b"[1]"
    assert _worker_protocol.encode_err(9, b"{}") == struct.pack(">IBQ", 11, 0x83, 9) + b"{}"
    assert _worker_protocol.encode_pong(9) == struct.pack(">IBQ", 9, 0x84, 9)
    assert _worker_protocol.encode_ping(9) == struct.pack(">IBQ", 9, 0x02, 9)
    assert _worker_protocol.encode_cancel(9) == struct.pack(">IBQ", 9, 0x04, 9)
    ready = _worker_protocol.encode_ready(["echo", "ping"], 42, 8, False)
    assert ready[4] == 0x81
    assert json.loads(ready[5:]) == {
        "protocol": 1,
        "pid": 42,
        "handlers": ["echo", "ping"],
        "concurrency": 8,
        "gil_enabled": False,
    }
    reenabled = _worker_protocol.encode_ready(["echo"], 42, 1, True, "GIL_REENABLED: by module x")
    assert json.loads(reenabled[5:])["gil_reenabled"] == "GIL_REENABLED: by module x"


@pytest.mark.parametrize("session", [None, "", "sé"])
def test_call_round_trips_including_unicode_and_no_session(session):
    frame = _worker_protocol.encode_call(
        2**64 - 1, "prédict", b"null", session or None, 2**32 - 1, True, 2**32 - 1
    )
    ftype, body = reader_over(frame, 4096).next_frame()
    assert ftype == _worker_protocol.CALL
    assert _worker_protocol.decode_call(body) == (
        2**64 - 1,
        2**32 - 1,
        "prédict",
        session or None,
        b"null",
        True,
        2**32 - 1,
    )


@pytest.mark.parametrize("step", [1, 2, 5, 17, 4096])
def test_reader_reassembles_frames_split_anywhere(step):
    frames = [_worker_protocol.encode_call(i, "m", b"x" * i) for i in range(20)]
    frames.append(_worker_protocol.encode_ping(99))
    reader = reader_over(b"".join(frames), step)
    seen = []
    while (frame := reader.next_frame()) is not None:
        seen.append(frame)
    assert [_worker_protocol.decode_call(body).args for _, body in seen[:-1]] == [b"x" * i for i in range(20)]
    assert seen[-1] == (_worker_protocol.PING, struct.pack(">Q", 99))


@pytest.mark.parametrize("step", [1, 2, 5, 17, 4096])
def test_feed_splits_frames_pushed_in_pieces_of_any_size(step):
    frames = [_worker_protocol.encode_call(i, "m", b"x" * i) for i in range(20)] + [
        _worker_protocol.encode_cancel(99)
    ]
    data = b"".join(frames)
    feed = _worker_protocol.FrameFeed()
    seen = []
    for i in range(0, len(data), step):
        seen += feed.feed(data[i : i + step])
    feed.end()
    assert [_worker_protocol.decode_call(body).args for _, body in seen[:-1]] == [b"x" * i for i in range(20)]
    assert seen[-1] == (_worker_protocol.CANCEL, struct.pack(">Q", 99))


def test_feed_rejects_bad_lengths_at_once_and_an_end_inside_a_frame():
    with pytest.raises(_worker_protocol.FrameError, match=r"outside 1\.\."):
        _worker_protocol.FrameFeed(1024).feed(struct.pack(">IB", 2000, 1))
    with pytest.raises(_worker_protocol.FrameError, match=r"outside 1\.\."):
        _worker_protocol.FrameFeed().feed(_worker_protocol.encode_ping(1) + struct.pack(">I", 0) + b"\x01")
    feed = _worker_protocol.FrameFeed()
    assert feed.feed(_worker_protocol.encode_ping(1)[:6]) == []
    with pytest.raises(_worker_protocol.FrameError, match="ended inside a frame"):
        feed.end()


def test_reader_hands_out_buffered_frames_without_reading_and_takes_frames_back():
    data = (
        _worker_protocol.encode_ping(1)
        + _worker_protocol.encode_credit(2, 5)
        + _worker_protocol.encode_ping(3)
    )
    chunks = [data[:20], data[20:]]
    reads = []

    def read(n: int) -> bytes:
        reads.append(n)
        return chunks.pop(0) if chunks else b""

    reader = _worker_protocol.FrameReader(read)
    assert reader.buffered_frame() is None and reads == [], "nothing read yet"
    assert reader.read_once() and len(reads) == 1
    assert reader.buffered_frame() == (_worker_protocol.PING, struct.pack(">Q", 1))
    assert reader.buffered_frame() is None, "the CREDIT is not whole yet"
    assert reader.read_once()
    credit = reader.buffered_frame()
    assert credit == (_worker_protocol.CREDIT, struct.pack(">QI", 2, 5))
    reader.unread([credit, (_worker_protocol.CANCEL, struct.pack(">Q", 4))])
    assert [reader.next_frame() for _ in range(3)] == [
        credit,
        (_worker_protocol.CANCEL, struct.pack(">Q", 4)),
        (_worker_protocol.PING, struct.pack(">Q", 3)),
    ]
    assert not reader.read_once() and reader.next_frame() is None


@pytest.mark.parametrize(
    "data, problem",
    [
        (struct.pack(">IB", 5, 1), "ended inside a frame"),
        (b"\0\0", "ended inside a frame"),
        (struct.pack(">I", 0) + b"\x01", "outside 1.."),
        (struct.pack(">IB", 2000, 1), "outside 1.."),
    ],
)
def test_reader_rejects_truncated_empty_and_oversized_frames(data, problem):
    with pytest.raises(_worker_protocol.FrameError, match=problem):
        reader_over(data, 3, max_frame=1024).next_frame()


@pytest.mark.parametrize(
    "body, problem",
    [
        (b"\0" * 20, "shorter than its 21-byte header"),
        (struct.pack(">QIBIHH", 1, 0, 0, 0, 10, 0) + b"abc", "overrun"),
        (struct.pack(">QIBIHH", 1, 0, 0, 0, 2, 0) + b"\xff\xfe", "not UTF-8"),
    ],
)
def test_malformed_call_bodies_are_frame_errors(body, problem):
    with pytest.raises(_worker_protocol.FrameError, match=problem):
        _worker_protocol.decode_call(body)


def test_id_bodies_must_be_exactly_eight_bytes():
    assert _worker_protocol.decode_id(struct.pack(">Q", 5)) == 5
    with pytest.raises(_worker_protocol.FrameError):
        _worker_protocol.decode_id(b"\0" * 9)
    assert _worker_protocol.split_reply(struct.pack(">Q", 5) + b"[]") == (5, b"[]")
    with pytest.raises(_worker_protocol.FrameError):
        _worker_protocol.split_reply(b"\0")
