"""MNIST data: locating, loading and checking, installing from a directory, downloading.

Real-data tests use the official files in $RNNFAST_DATA/mnist, else ../shared/data/mnist (CI
has them; tests/data_paths.py), and are skipped only when both are absent. Everything else runs
on tiny IDX files written here; downloads come from file:// and local http:// mirrors, with
the checksums overridden for the tiny files.
"""

import functools
import gzip
import hashlib
import http.server
import shutil
import sys
import threading

import numpy as np
import pytest
from data_paths import SHARED, data_dir, missing

from rnnfast.tasks import mnist_data
from rnnfast.tasks.idx import encode_idx, read_idx, write_idx
from rnnfast.tasks.mnist_data import (
    FILES,
    DownloadError,
    download,
    install_from,
    load_mnist,
    locate,
    payload_sha256,
)

REAL = data_dir("mnist")
HAVE_REAL = all((REAL / (f.name + ".gz")).is_file() for f in FILES.values())
needs_real = pytest.mark.skipif(not HAVE_REAL, reason=f"official MNIST files: {missing('mnist')}")

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No test sees the user's RNNFAST_DATA, XDG_CACHE_HOME or home directory."""
    monkeypatch.delenv("RNNFAST_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def tiny_arrays(seed=0, n_train=6, n_test=4):
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_set(directory, arrays, compress=True, names=None):
    directory.mkdir(parents=True, exist_ok=True)
    for key, a in arrays.items():
        name = (names or {}).get(key, FILES[key].name + (".gz" if compress else ""))
        write_idx(directory / name, a, gzip=compress)
    return directory


@pytest.fixture
def tiny(tmp_path):
    """A directory of tiny MNIST-format .gz files, their arrays, and their checksums."""
    arrays = tiny_arrays()
    directory = write_set(tmp_path / "tiny", arrays)
    sums = {k: hashlib.sha256(encode_idx(a)).hexdigest() for k, a in arrays.items()}
    return directory, arrays, sums


def assert_same(got, want):
    assert set(got) == set(FILES)
    for key in FILES:
        assert got[key].dtype == np.uint8
        np.testing.assert_array_equal(got[key], want[key])


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# ---------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real():
    return load_mnist(REAL, verify=True)


@needs_real
def test_real_load(real):
    for key, spec in FILES.items():
        assert real[key].shape == spec.shape and real[key].dtype == np.uint8
    assert real["train_images"].min() == 0 and real["train_images"].max() == 255
    np.testing.assert_array_equal(real["train_labels"][:5], [5, 0, 4, 1, 9])
    np.testing.assert_array_equal(real["test_labels"][:5], [7, 2, 1, 0, 4])
    np.testing.assert_array_equal(np.bincount(real["train_labels"], minlength=10), TRAIN_COUNTS)
    np.testing.assert_array_equal(np.bincount(real["test_labels"], minlength=10), TEST_COUNTS)


@needs_real
def test_real_checksums_are_the_hard_coded_ones():
    for spec in FILES.values():
        assert payload_sha256(REAL / (spec.name + ".gz")) == spec.sha256


@needs_real
def test_install_from_real_mixed_formats(tmp_path, real):
    # Any mix of raw and re-compressed copies of the official files installs and verifies.
    src = tmp_path / "src"
    src.mkdir()
    for key, spec in FILES.items():
        gz = REAL / (spec.name + ".gz")
        if key == "train_labels":
            (src / spec.name).write_bytes(gzip.decompress(gz.read_bytes()))
        elif key == "test_labels":
            (src / "t10k-labels.idx1-ubyte.gz").write_bytes(
                gzip.compress(gzip.decompress(gz.read_bytes()), compresslevel=1)
            )
        else:
            shutil.copy(gz, src)
    dest = tmp_path / "dest"
    assert install_from(src, dest) == dest
    assert leftovers(dest) == sorted(
        [
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte",
        ]
    )
    np.testing.assert_array_equal(read_idx(dest / "train-labels-idx1-ubyte"), real["train_labels"])
    np.testing.assert_array_equal(read_idx(dest / "t10k-labels-idx1-ubyte.gz"), real["test_labels"])


@needs_real
def test_install_from_real_tampered(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REAL, src)
    target = src / "t10k-labels-idx1-ubyte.gz"
    target.chmod(0o644)
    data = bytearray(gzip.decompress(target.read_bytes()))
    data[-1] = (data[-1] + 1) % 10  # still a well-formed label file
    target.write_bytes(gzip.compress(bytes(data)))
    dest = tmp_path / "dest"
    with pytest.raises(ValueError, match="SHA-256") as e:
        install_from(src, dest)
    assert str(target) in str(e.value)
    assert leftovers(dest) == []  # nothing installed, no temp files
    with pytest.raises(ValueError, match=f"{target}: SHA-256"):
        load_mnist(src, verify=True)
    assert load_mnist(src)["test_labels"][-1] == data[-1]  # without verify it loads


# ---------------------------------------------------------------------------- locate


def test_locate_precedence(monkeypatch, tmp_path):
    home = tmp_path / "home"
    assert locate() == home / ".cache" / "rnnfast" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert locate() == home / ".cache" / "rnnfast" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert locate() == tmp_path / "xdg" / "rnnfast" / "mnist"
    monkeypatch.setenv("RNNFAST_DATA", str(tmp_path / "data"))
    assert locate() == tmp_path / "data" / "mnist"
    monkeypatch.setenv("RNNFAST_DATA", "")  # empty means unset
    assert locate() == tmp_path / "xdg" / "rnnfast" / "mnist"
    monkeypatch.setenv("RNNFAST_DATA", str(tmp_path / "data"))
    assert locate(tmp_path / "given") == tmp_path / "given"
    assert locate(str(tmp_path / "given")) == tmp_path / "given"
    assert locate("~/d") == home / "d"


def test_locate_macos_and_windows(monkeypatch, tmp_path):
    home = tmp_path / "home"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert locate() == home / "Library" / "Caches" / "rnnfast" / "mnist"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert locate() == tmp_path / "local" / "rnnfast" / "mnist"
    monkeypatch.delenv("LOCALAPPDATA")
    assert locate() == home / "AppData" / "Local" / "rnnfast" / "mnist"
    monkeypatch.setenv("RNNFAST_DATA", str(tmp_path / "data"))
    assert locate() == tmp_path / "data" / "mnist"


# ---------------------------------------------------------------------------- loading


def test_load_tiny_and_via_env(monkeypatch, tiny):
    directory, arrays, _ = tiny
    assert_same(load_mnist(directory), arrays)
    assert_same(load_mnist(str(directory)), arrays)
    root = directory.parent / "root"
    shutil.copytree(directory, root / "mnist")
    monkeypatch.setenv("RNNFAST_DATA", str(root))
    assert_same(load_mnist(), arrays)


def test_load_raw_and_dotted_names(tmp_path):
    arrays = tiny_arrays(1)
    names = {k: FILES[k].name.replace("-idx", ".idx") for k in FILES}  # train-images.idx3-ubyte
    names["test_labels"] = FILES["test_labels"].name
    assert_same(load_mnist(write_set(tmp_path / "d", arrays, compress=False, names=names)), arrays)


def test_load_verify_rejects_non_official(tiny):
    directory, _, _ = tiny
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz: SHA-256 .* expected ba89"):
        load_mnist(directory, verify=True)


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_mnist(tmp_path / "empty")
    msg = str(e.value)
    for part in ["rnnfast data mnist ", "rnnfast data mnist --from DIR", "RNNFAST_DATA"]:
        assert part in msg
    assert "data_dir" in msg and str(tmp_path / "empty") in msg
    assert str(locate()) in msg  # where the commands install

    write_set(tmp_path / "part", {k: a for k, a in tiny_arrays().items() if k != "test_images"})
    with pytest.raises(FileNotFoundError, match="missing t10k-images-idx3-ubyte\\[.gz\\]\\.\n"):
        load_mnist(tmp_path / "part")


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("train_images", np.zeros((6, 28, 27), np.uint8), "images of shape \\(N, 28, 28\\)"),
        ("test_images", np.zeros((4, 784), np.uint8), "images of shape \\(N, 28, 28\\)"),
        ("test_images", np.zeros((4, 28, 28), np.float32), "dtype uint8, got .* float32"),
        ("train_labels", np.zeros(6, np.int16), "labels of shape \\(N,\\) and dtype uint8"),
        ("train_labels", np.zeros((6, 1), np.uint8), "labels of shape \\(N,\\)"),
        ("test_labels", np.array([1, 2, 10, 3], np.uint8), "label 10 at index 2, expected 0..9"),
        ("test_labels", np.zeros(5, np.uint8), "4 images but .* 5 labels"),
        ("train_images", np.zeros((0, 28, 28), np.uint8), "0 images but .* 6 labels"),
    ],
)
def test_load_rejects_malformed(tmp_path, key, value, match):
    arrays = tiny_arrays()
    arrays[key] = value
    directory = write_set(tmp_path / "d", arrays)
    with pytest.raises(ValueError, match=match) as e:
        load_mnist(directory)
    assert str(directory / (FILES[key].name + ".gz")) in str(e.value)


def test_load_rejects_truncated_file(tiny):
    directory, _, _ = tiny
    path = directory / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-1]))
    with pytest.raises(ValueError, match=f"{path}: truncated"):
        load_mnist(directory)


# ---------------------------------------------------------------------------- install_from


def test_install_from_tiny(tmp_path, tiny):
    src, arrays, sums = tiny
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "train-images-idx3-ubyte").write_bytes(b"stale raw copy that would shadow")
    assert install_from(src, dest, checksums=sums) == dest
    assert leftovers(dest) == sorted(f.name + ".gz" for f in FILES.values())
    assert_same(load_mnist(dest), arrays)
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in dest.iterdir())
    assert install_from(src, src, checksums=sums) == src  # same directory: only verifies


def test_install_from_default_dest(monkeypatch, tmp_path, tiny):
    src, arrays, sums = tiny
    monkeypatch.setenv("RNNFAST_DATA", str(tmp_path / "data"))
    assert install_from(src, checksums=sums) == tmp_path / "data" / "mnist"
    assert_same(load_mnist(), arrays)


def test_install_from_rejects_bad_and_missing(tmp_path, tiny):
    src, _, sums = tiny
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz: SHA-256"):
        install_from(src, tmp_path / "dest")  # official checksums
    bad = dict(sums, test_labels="0" * 64)
    with pytest.raises(ValueError, match=f"{src / 't10k-labels-idx1-ubyte.gz'}: SHA-256"):
        install_from(src, tmp_path / "dest", checksums=bad)
    assert leftovers(tmp_path / "dest") == []
    with pytest.raises(ValueError, match="unknown key 'labels'"):
        install_from(src, tmp_path / "dest", checksums={"labels": "0" * 64})
    (src / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="missing t10k-images-idx3-ubyte"):
        install_from(src, tmp_path / "dest", checksums=sums)


# ---------------------------------------------------------------------------- download


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory; paths under /short/ promise more bytes than they send."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/short/"):
            body = b"\x1f\x8b" + b"x" * 10
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + 100))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def server(tiny):
    handler = functools.partial(_Handler, directory=str(tiny[0]))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_file_mirror(tmp_path, tiny):
    src, arrays, sums = tiny
    dest = tmp_path / "dest"
    mirrors = [(tmp_path / "nothing-here").as_uri() + "/", src.as_uri()]
    assert download(dest, mirrors=mirrors, checksums=sums, progress=False) == dest
    assert leftovers(dest) == sorted(f.name + ".gz" for f in FILES.values())
    assert_same(load_mnist(dest), arrays)
    # Present and valid: nothing is fetched, so no mirror is needed.
    assert download(dest, mirrors=[], checksums=sums) == dest


def test_download_http_with_fallback_and_progress(monkeypatch, capsys, tmp_path, tiny, server):
    _, arrays, sums = tiny
    monkeypatch.setattr(mnist_data, "_show_progress", lambda progress: progress)
    dest = tmp_path / "dest"
    write_set(dest, {"train_labels": np.zeros(3, np.uint8)})  # present but not valid: replaced
    mirrors = [f"{server}/missing", f"{server}/short/", server]
    assert download(dest, mirrors=mirrors, checksums=sums) == dest
    assert_same(load_mnist(dest), arrays)
    assert leftovers(dest) == sorted(f.name + ".gz" for f in FILES.values())
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err


def test_download_all_mirrors_fail(tmp_path, tiny, server):
    src, _, sums = tiny
    dest = tmp_path / "dest"
    bad = dict(sums, train_images="f" * 64)
    mirrors = [f"{server}/missing/", f"{server}/short", src.as_uri(), "nope://x"]
    with pytest.raises(DownloadError) as e:
        download(dest, mirrors=mirrors, checksums=bad, progress=False)
    msg = str(e.value)
    assert "could not download train-images-idx3-ubyte.gz" in msg
    assert f"{server}/missing/train-images-idx3-ubyte.gz: HTTP Error 404" in msg
    assert f"{server}/short/train-images-idx3-ubyte.gz: " in msg
    assert f"{src.as_uri()}/train-images-idx3-ubyte.gz: SHA-256" in msg
    assert "nope://x/train-images-idx3-ubyte.gz" in msg
    assert "rnnfast data mnist --from DIR" in msg
    assert isinstance(e.value, OSError)
    assert leftovers(dest) == []  # nothing put in place, no temp files


def test_download_no_mirrors(tmp_path):
    with pytest.raises(DownloadError, match="no mirrors given"):
        download(tmp_path / "dest", mirrors=[], progress=False)
    assert leftovers(tmp_path / "dest") == []


def test_mirrors_are_the_standard_ones():
    assert mnist_data.MIRRORS[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert all(m.endswith("/") for m in mnist_data.MIRRORS)


def test_the_tests_find_real_data_through_rnnfast_data_as_rnnfast_does(tmp_path, monkeypatch):
    """tests/data_paths.py: $RNNFAST_DATA/mnist when it exists, else the shared copy."""
    own = tmp_path / "data" / "mnist"
    own.mkdir(parents=True)
    monkeypatch.setenv("RNNFAST_DATA", str(tmp_path / "data"))
    assert data_dir("mnist") == own == locate()
    monkeypatch.setenv("RNNFAST_DATA", str(tmp_path / "elsewhere"))  # no mnist/ there
    assert data_dir("mnist") == SHARED / "mnist"
    monkeypatch.setenv("RNNFAST_DATA", "")  # empty means unset
    assert data_dir("mnist") == SHARED / "mnist"
