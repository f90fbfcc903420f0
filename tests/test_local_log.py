from simtui.store.logs import LocalLog


def test_append_resume_point_and_compression(tmp_path):
    log = LocalLog("abc", home=tmp_path)
    assert log.claim()
    assert log.size() == 0 and list(log.chunks()) == []
    log.append("α\n".encode()[:1])  # half of a two-byte character
    log.append("α\n".encode()[1:] + b"more\n")
    assert log.size() == len("α\nmore\n".encode())
    log.compress()
    assert log.compressed and not log.path.exists()
    assert b"".join(log.chunks()) == "α\nmore\n".encode()
    assert b"".join(LocalLog("abc", home=tmp_path).chunks(offset=3)) == b"more\n"
    assert LocalLog("abc", home=tmp_path).size() == 8


def test_tail_of_a_plain_and_a_compressed_copy(tmp_path):
    log = LocalLog("big", home=tmp_path)
    assert log.claim()
    data = b"".join(b"line %06d\n" % i for i in range(50_000))  # 550 kB: several read chunks
    log.append(data)
    assert log.tail(100) == (len(data) - 100, data[-100:])
    log.compress()
    assert log.tail(100) == (len(data) - 100, data[-100:])
    assert log.tail(10**9) == (0, data)


def test_only_the_writer_compresses_and_keeps_the_claim_until_done(tmp_path):
    writer, other = LocalLog("one", home=tmp_path), LocalLog("one", home=tmp_path)
    assert writer.claim()
    writer.append(b"x\n")
    assert not other.claim()  # one writer per log, in this process too
    try:
        other.compress()
    except RuntimeError as err:
        assert "claim" in str(err)
    else:
        raise AssertionError("compressed without the claim")
    writer.compress()
    assert writer.compressed and other.claim()  # released once compressed
    other.compress()  # nothing left to do
    assert b"".join(other.chunks()) == b"x\n"
