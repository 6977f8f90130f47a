"""Official weights by name and checkpoints by URL, against a server on 127.0.0.1 and file:// URLs (no network
here): downloaded once into the cache, verified (length, published md5 prefix, loadable), nothing cached when a
download is truncated, unreadable, mismatched or interrupted."""
import hashlib
import http.server
import io
import os
import threading

import pytest
import torch

import mae_backbone  # noqa: F401  (registers pretrained= for the presets)
from mae_backbone import weights
from mae_backbone.checkpoint import load_checkpoint, read_checkpoint
from mae_backbone.models import create_model, vit_tiny_patch16


class Server:
    """Serves ``files`` (path -> bytes); ``lie_length`` announces more bytes than it sends (a cut connection)."""

    def __init__(self, files, lie_length=()):
        self.files, self.lie_length, self.requests = files, set(lie_length), []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) + (1000 if self.path in outer.lie_length else 0)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def tiny_checkpoint_bytes(seed=0):
    torch.manual_seed(seed)
    m = vit_tiny_patch16(img_size=32, depth=2)
    buf = io.BytesIO()
    torch.save({"model": m.state_dict()}, buf)
    return m, buf.getvalue()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MAE_BACKBONE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def leftovers(cache):
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_url_download_is_cached_once_and_loads_strictly(cache):
    model, body = tiny_checkpoint_bytes()
    server = Server({"/ckpt/mae_tiny.pth": body})
    try:
        url = f"{server.url}/ckpt/mae_tiny.pth"
        other = vit_tiny_patch16(img_size=32, depth=2)
        report = load_checkpoint(other, url)
        assert report.loaded and torch.equal(other.blocks[1].attn.qkv.weight, model.blocks[1].attn.qkv.weight)
        read_checkpoint(url)  # second use: from the cache
        assert server.requests == ["/ckpt/mae_tiny.pth"]
        assert leftovers(cache) == [weights.cached_name(url)] and weights.cached_name(url).endswith("-mae_tiny.pth")
    finally:
        server.close()


def test_official_name_with_its_published_md5_prefix_and_pretrained_true(cache, monkeypatch):
    """The registry entry is pointed at the local server; its md5 prefix is checked as the official one would be."""
    model, body = tiny_checkpoint_bytes(seed=1)
    server = Server({"/mae/pretrain/mae_pretrain_vit_tiny.pth": body})
    try:
        url = f"{server.url}/mae/pretrain/mae_pretrain_vit_tiny.pth"
        md5 = hashlib.md5(body).hexdigest()
        monkeypatch.setitem(weights.WEIGHTS, "mae_pretrain_vit_tiny", weights.OfficialWeights(
            url, "vit_tiny_patch16", "test encoder", "test server", md5[:6]))
        monkeypatch.setitem(weights.PRESET_WEIGHTS, "vit_tiny_patch16", "mae_pretrain_vit_tiny")
        built = create_model("vit_tiny_patch16", img_size=32, depth=2, pretrained=True)
        assert torch.equal(built.patch_embed.proj.weight, model.patch_embed.proj.weight)
        by_name = vit_tiny_patch16(img_size=32, depth=2, pretrained="mae_pretrain_vit_tiny")
        assert torch.equal(by_name.norm.weight, model.norm.weight) and len(server.requests) == 1
        # a wrong published prefix: refused, nothing cached
        monkeypatch.setitem(weights.WEIGHTS, "mae_pretrain_vit_tiny2", weights.OfficialWeights(
            url.replace("tiny.pth", "tiny2.pth"), "vit_tiny_patch16", "test", "test",
            "000000" if not md5.startswith("000000") else "ffffff"))
        server.files["/mae/pretrain/mae_pretrain_vit_tiny2.pth"] = body
        with pytest.raises(weights.DownloadError, match="does not start with the published"):
            read_checkpoint("mae_pretrain_vit_tiny2")
        assert "mae_pretrain_vit_tiny2.pth" not in leftovers(cache)
    finally:
        server.close()


def test_truncated_unreadable_and_missing_downloads_leave_nothing(cache, tmp_path):
    _, body = tiny_checkpoint_bytes()
    server = Server({"/cut.pth": body, "/junk.pth": os.urandom(4096), "/ok.pth": body}, lie_length=["/cut.pth"])
    try:
        with pytest.raises(weights.DownloadError, match="broke off|incomplete"):  # fewer bytes than announced
            read_checkpoint(f"{server.url}/cut.pth")
        with pytest.raises(weights.DownloadError, match="not a loadable checkpoint"):
            read_checkpoint(f"{server.url}/junk.pth")
        with pytest.raises(weights.DownloadError, match="cannot download"):
            read_checkpoint(f"{server.url}/missing.pth")
        assert leftovers(cache) == []  # no partial or unverified file
        read_checkpoint(f"{server.url}/ok.pth")
        assert len(leftovers(cache)) == 1
    finally:
        server.close()


def test_interrupted_download_leaves_no_partial_file(cache, monkeypatch):
    _, body = tiny_checkpoint_bytes()
    src = cache.parent / "big.pth"
    src.write_bytes(body)
    class Interrupt(Exception):
        pass

    calls = []
    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        f = real_fdopen(fd, mode, *args, **kwargs)
        if mode == "wb":  # the download's temporary file
            real_write = f.write

            def write(chunk):
                calls.append(len(chunk))
                real_write(chunk[: len(chunk) // 2])
                raise Interrupt  # as a Ctrl-C or a dropped connection in the middle of the file
            f.write = write
        return f
    monkeypatch.setattr(weights.os, "fdopen", fdopen)
    with pytest.raises(Interrupt):
        read_checkpoint(src.as_uri())  # file:// URL
    assert calls and leftovers(cache) == []
    monkeypatch.setattr(weights.os, "fdopen", real_fdopen)
    assert read_checkpoint(src.as_uri())["model"]  # a later attempt completes


def test_unknown_names_and_paths_say_what_a_checkpoint_can_be(cache):
    with pytest.raises(FileNotFoundError, match="official names: mae_pretrain_vit_base") as err:
        read_checkpoint("mae_pretrain_vit_bse")
    assert "did you mean 'mae_pretrain_vit_base'" in str(err.value)
    with pytest.raises(ValueError, match="no official MAE weights for vit_tiny_patch16"):
        vit_tiny_patch16(pretrained=True)
    for name, w in weights.WEIGHTS.items():  # every official entry: the authors' host, a preset it loads into
        assert w.url.startswith("https://dl.fbaipublicfiles.com/mae/") and w.url.endswith(f"/{name}.pth")
        assert w.arch in create_model.__globals__["_REGISTRY"] and (w.md5_prefix is None or len(w.md5_prefix) == 6)


def test_weights_page_lists_every_name():
    page = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "weights.md")).read()
    for name, w in weights.WEIGHTS.items():
        assert f"`{name}`" in page and (w.md5_prefix is None or w.md5_prefix in page), name


def test_concurrent_downloads_fetch_once(cache):
    """DDP ranks resolving the same name at once: one download, the others wait for it."""
    _, body = tiny_checkpoint_bytes()
    server = Server({"/shared.pth": body})
    try:
        results, errors = [], []

        def worker():
            try:
                results.append(weights.resolve_checkpoint(f"{server.url}/shared.pth"))
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors and len(set(results)) == 1 and server.requests == ["/shared.pth"]
        assert leftovers(cache) == [results[0].name]  # no lock or partial file left
    finally:
        server.close()


def test_urls_of_safetensors_and_training_checkpoints_verify_like_local_files(cache, tmp_path):
    from safetensors.torch import save_file
    m, _ = tiny_checkpoint_bytes()
    st = tmp_path / "enc.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(st))
    assert "blocks.0.attn.qkv.weight" in read_checkpoint(st.as_uri())
