from simtui.store.logs import LocalLog


def test_append_resume_point_and_compression(tmp_path):
    log = LocalLog("abc", home=tmp_path)
    assert log.size() == 0 and list(log.chunks()) == []
    log.append("α\n".encode()[:1])  # half of a two-byte character
    log.append("α\n".encode()[1:] + b"more\n")
    assert log.size() == len("α\nmore\n".encode())
    log.compress()
    assert log.compressed and not log.path.exists()
    assert b"".join(log.chunks()) == "α\nmore\n".encode()
    assert b"".join(LocalLog("abc", home=tmp_path).chunks(offset=3)) == b"more\n"
    assert LocalLog("abc", home=tmp_path).size() == 8
