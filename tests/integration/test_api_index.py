#!/usr/bin/env python3
"""Integration test of the index routes on the real `imago serve` (port 0,
loopback, demo model ResNet-50 + GeM at 128 px): a bulk ingest job of the
shared photos (copied into a temporary ingest root), every photo finds itself
at rank 1, a box query, add / get / thumbnail / delete (removed from results
at once), metadata filters, a manifest job, jobs listing / cancel conflicts,
reindex, every error path with its exact status and code (tokens, corrupt
image, content type, body limit, pixel bomb, unknown ids, bad parameters,
ingest sources outside ingest.roots through '..' and symlinks), metrics,
graceful shutdown with a snapshot, restart, and the refusal to start on a
store built with another model. Prints TAP.

usage: test_api_index.py path/to/imago
"""
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import imago_testlib as hc  # noqa: E402  (the harness: Server, ok, check_error, multipart)

from imago_testlib import ok, is_eq, check_error, jget, multipart  # noqa: E402

ADM, SRCH = "adm-tok-1", "srch-tok-2"
A = {"Authorization": "Bearer " + ADM}
S = {"Authorization": "Bearer " + SRCH}
J = dict(A, **{"Content-Type": "application/json"})


def wait_job(srv, job_id, timeout=240):
    return hc.wait_job(srv, job_id, A, timeout)


def search(srv, img, qs="", ctype="image/jpeg"):
    r, data = srv.request("POST", "/v1/search" + qs, img, dict(S, **{"Content-Type": ctype}))
    try:
        return r.status, json.loads(data)
    except Exception:
        return r.status, {}


def ctype_of(name):
    return "image/png" if name.lower().endswith(".png") else "image/jpeg"


def main():
    if len(sys.argv) < 2:
        print("1..0 # SKIP usage: test_api_index.py IMAGO")
        return 0
    imago = sys.argv[1]
    photos_dir = hc.shared_photos()
    src = os.environ.get("IMAGO_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
    fixtures = os.path.join(src, "tests", "data")
    if not os.path.isdir(photos_dir):
        print("1..0 # SKIP no photos in $IMAGO_SHARED/data/photos")
        return 0
    try:
        from PIL import Image
    except ImportError:
        print("1..0 # SKIP needs PIL (Debian python3-pil) to make the box and crop images")
        return 0

    tmp = tempfile.mkdtemp(prefix="imago_api_")
    root = os.path.join(tmp, "root")
    photos = os.path.join(root, "photos")
    os.makedirs(photos)
    names = hc.copy_photos(photos_dir, photos)
    bad = os.path.join(photos, "broken")
    os.makedirs(bad)
    shutil.copy(os.path.join(fixtures, "img_corrupt.jpg"), os.path.join(bad, "corrupt.jpg"))
    # escapes: a symlinked folder and a symlinked file pointing out of the root
    outside = os.path.join(tmp, "outside")
    os.makedirs(outside)
    shutil.copy(os.path.join(photos_dir, names[0]), os.path.join(outside, "secret.jpg"))
    os.symlink(outside, os.path.join(root, "escape"))
    os.symlink(os.path.join(outside, "secret.jpg"), os.path.join(photos, "zz_link_out.jpg"))
    data_dir = os.path.join(tmp, "data")
    common = ["--auth.admin-token", ADM, "--auth.search-token", SRCH, "--ingest.roots", root,
              "--ingest.parallelism", "2", "--server.max-body-bytes", "4MiB",
              "--engine.max-pixels", "50000000"]
    srv = hc.Server(imago, data_dir, common)
    r, data = srv.wait_ready()
    is_eq((r.status, json.loads(data) if r.status == 200 else data),
          (200, {"status": "ready", "model": "loaded", "index": "ready"}),
          "readyz: model loaded and index ready")
    code, info = jget(srv, "/v1/info", {})
    is_eq((code, info.get("index")),
          (200, {"type": "Flat", "size": 0, "seq": 0, "dim": 2048, "whitening": None}),
          "info: index type, size, sequence, dim, no learned whitening")

    # ---- job sources: roots, '..', symlinks, types ----
    def job(body, status, code, name):
        return check_error(srv, "POST", "/v1/admin/jobs", status, code, name,
                           json.dumps(body).encode(), J)
    job({"source": {"dir": outside}}, 403, "forbidden", "job: dir outside ingest.roots")
    job({"source": {"dir": photos + "/../../outside"}}, 403, "forbidden", "job: '..' out of the root")
    job({"source": {"dir": os.path.join(root, "escape")}}, 403, "forbidden",
        "job: symlinked folder pointing out of the root")
    job({"source": {"dir": "/etc"}}, 403, "forbidden", "job: /etc")
    job({"source": {"dir": os.path.join(root, "nope")}}, 422, "unprocessable",
        "job: missing folder below the root")
    job({"source": {"dir": os.path.join(photos, names[0])}}, 422, "unprocessable",
        "job: a file as dir")
    job({"source": {"manifest": os.path.join(outside, "m.jsonl")}}, 403, "forbidden",
        "job: manifest outside the root")
    check_error(srv, "POST", "/v1/admin/jobs", 401, "unauthorized", "job without a token",
                json.dumps({"source": {"dir": photos}}).encode(), {"Content-Type": "application/json"})
    check_error(srv, "POST", "/v1/admin/jobs", 403, "forbidden", "job with the search token",
                json.dumps({"source": {"dir": photos}}).encode(),
                dict(S, **{"Content-Type": "application/json"}))
    check_error(srv, "POST", "/v1/admin/jobs", 400, "invalid_json", "job body not JSON", b"{x", J)

    # ---- the bulk job ----
    t0 = time.time()
    r, data = srv.request("POST", "/v1/admin/jobs",
                          json.dumps({"source": {"dir": photos, "recursive": True}}).encode(), J)
    jid = json.loads(data).get("job_id", 0) if r.status == 202 else 0
    ok(r.status == 202 and jid > 0, "POST /v1/admin/jobs -> 202 {job_id}", data)
    st = wait_job(srv, jid)
    dt = time.time() - t0
    print("# job: %d photos in %.1f s" % (len(names), dt))
    is_eq((st.get("state"), st.get("total"), st.get("done"), st.get("failed")),
          ("done", len(names) + 1, len(names), 1),
          "job done: every photo indexed, the corrupt file failed, the link out skipped")
    errs = st.get("errors") or [{}]
    is_eq((len(errs), errs[0].get("code"), errs[0].get("path", "").endswith("broken/corrupt.jpg")),
          (1, "invalid_image", True), "job errors: the corrupt file with a typed code")
    ok(isinstance(st.get("rate"), float) and st["rate"] > 0 and st.get("eta_s") == 0,
       "job rate > 0 images/s, eta 0 when done", st)
    code, lst = jget(srv, "/v1/admin/jobs", A)
    ok(code == 200 and [j["id"] for j in lst.get("jobs", [])][:1] == [jid],
       "GET /v1/admin/jobs lists the job, newest first", lst)
    check_error(srv, "DELETE", "/v1/admin/jobs/%d" % jid, 409, "conflict", "cancel a finished job",
                None, A)
    check_error(srv, "GET", "/v1/admin/jobs/9999", 404, "not_found", "unknown job", None, A)
    check_error(srv, "DELETE", "/v1/admin/jobs/9999", 404, "not_found", "cancel an unknown job",
                None, A)
    code, info = jget(srv, "/v1/info", {})
    is_eq(info.get("index", {}).get("size"), len(names), "info: index size = photos")

    # ---- every photo finds itself at rank 1 ----
    ids = {}
    wrong = []
    for n in names:
        img = open(os.path.join(photos, n), "rb").read()
        code, res = search(srv, img, "?k=3", ctype_of(n))
        hits = res.get("results") or [{}]
        top = hits[0]
        if code != 200 or top.get("external_id") != "photos/" + n or top.get("score", 0) < 0.9999:
            wrong.append((n, code, top.get("external_id"), top.get("score")))
        else:
            ids[n] = top["id"]
    ok(not wrong, "each of the %d photos as a query -> itself at rank 1 (score ~1)" % len(names),
       wrong)
    img0 = open(os.path.join(photos, names[0]), "rb").read()
    code, res = search(srv, img0, "", ctype_of(names[0]))
    tm = res.get("timings") or {}
    ok(code == 200 and all(k in tm for k in ("decode_ms", "queue_ms", "forward_ms", "search_ms",
                                              "qe_ms", "metadata_ms", "total_ms"))
       and res.get("index_seq", 0) >= len(names) and len(res.get("results", [])) == 10,
       "search answer: 10 results by default, stage timings, index_seq", res)
    h0 = (res.get("results") or [{}])[0]
    ok(h0.get("uri", "").endswith("photos/" + names[0]) and h0.get("metadata") == {},
       "hit carries uri and metadata", h0)
    code, res2 = search(srv, img0, "?qe=true&qe_k=2", ctype_of(names[0]))
    ok(code == 200 and res2["results"][0]["external_id"] == "photos/" + names[0],
       "search with query expansion -> 200, itself first")

    # ---- box query: a crop of a photo, stored losslessly, is found by the box ----
    big = next(n for n in names if n.endswith(".jpg") and
               min(Image.open(os.path.join(photos, n)).size) >= 300)
    im = Image.open(os.path.join(photos, big)).convert("RGB")
    w, h = im.size
    box = (w // 4, h // 4, w // 4 + w // 2, h // 4 + h // 2)
    buf = io.BytesIO()
    im.crop(box).save(buf, format="PNG")
    crop_png = buf.getvalue()
    b, mh = multipart([("external_id", b"crop-1"), ("metadata", b'{"kind":"crop","n":1}'),
                       ("uri", b"mem://crop-1"), ("image", crop_png, "image/png", "crop.png")])
    r, data = srv.request("POST", "/v1/images", b, dict(mh, **A))
    add = json.loads(data) if r.status == 201 else {}
    crop_id = add.get("id", 0)
    ok(r.status == 201 and crop_id > 0 and add.get("replaced") is False
       and r.getheader("Location") == "/v1/images/%d" % crop_id,
       "POST /v1/images -> 201 {id}, Location", data)
    big_bytes = open(os.path.join(photos, big), "rb").read()
    code, res = search(srv, big_bytes, "?k=2&bbox=%d,%d,%d,%d" % box)
    top = (res.get("results") or [{}])[0]
    is_eq((code, top.get("id")), (200, crop_id), "box query on the full photo -> the crop first")
    code, res = search(srv, big_bytes, "?k=2")
    is_eq((code, res["results"][0]["external_id"] if code == 200 else None),
          (200, "photos/" + big), "same photo without the box -> the photo itself first")

    # ---- add again: idempotent, replace ----
    r, data = srv.request("POST", "/v1/images", b, dict(mh, **A))
    again = json.loads(data) if r.status in (200, 201) else {}
    is_eq((r.status, again.get("id"), again.get("replaced")), (200, crop_id, False),
          "same external_id + same bytes -> 200, same id, nothing recomputed")
    buf2 = io.BytesIO()
    im.crop(box).transpose(Image.FLIP_LEFT_RIGHT).save(buf2, format="PNG")
    b2, mh2 = multipart([("external_id", b"crop-1"), ("metadata", b'{"kind":"crop","n":2}'),
                         ("image", buf2.getvalue(), "image/png", "crop.png")])
    r, data = srv.request("POST", "/v1/images", b2, dict(mh2, **A))
    rep = json.loads(data) if r.status == 201 else {}
    is_eq((r.status, rep.get("id"), rep.get("replaced")), (201, crop_id, True),
          "same external_id + other bytes -> 201, replaced in place (same id)")
    code, rec = jget(srv, "/v1/images/%d" % crop_id, S)
    is_eq((code, rec.get("external_id"), rec.get("metadata"), rec.get("width"), rec.get("height")),
          (200, "crop-1", {"kind": "crop", "n": 2}, box[2] - box[0], box[3] - box[1]),
          "GET /v1/images/{id} -> the new metadata and the source size")
    r, thumb = srv.request("GET", "/v1/images/%d/thumbnail" % crop_id, None, S)
    timg = Image.open(io.BytesIO(thumb)) if r.status == 200 else None
    ok(r.status == 200 and r.getheader("Content-Type") == "image/jpeg" and thumb[:2] == b"\xff\xd8"
       and timg is not None and max(timg.size) <= 256 and max(timg.size) >= 200,
       "thumbnail -> image/jpeg, longer side <= 256", (r.status, timg.size if timg else None))
    code, res = search(srv, img0, "?k=50&filter=" + urllib.parse.quote('{"kind":"crop"}'))
    is_eq((code, [x["id"] for x in res.get("results", [])]), (200, [crop_id]),
          "metadata filter -> only the matching image")

    # ---- errors on search and add ----
    bomb = open(os.path.join(fixtures, "img_huge.jpg"), "rb").read()
    corrupt = open(os.path.join(fixtures, "img_corrupt.jpg"), "rb").read()
    check_error(srv, "POST", "/v1/search", 400, "invalid_image", "search: corrupt JPEG",
                corrupt, dict(S, **{"Content-Type": "image/jpeg"}))
    check_error(srv, "POST", "/v1/search", 413, "image_too_large", "search: pixel bomb",
                bomb, dict(S, **{"Content-Type": "image/jpeg"}))
    raw = hc.raw_exchange(srv.port, ("POST /v1/search HTTP/1.1\r\nHost: x\r\nAuthorization: "
                                     "Bearer %s\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                     "%d\r\n\r\n" % (SRCH, 5 << 20)).encode())
    ok(hc.status_of(raw) == 413 and b'"payload_too_large"' in raw,
       "search: declared body over server.max_body_bytes -> 413 payload_too_large", raw[:300])
    check_error(srv, "POST", "/v1/search", 415, "unsupported_media_type", "search: text/plain",
                b"hello", dict(S, **{"Content-Type": "text/plain"}))
    check_error(srv, "POST", "/v1/search?k=0", 400, "invalid_parameter", "search: k=0",
                img0, dict(S, **{"Content-Type": "image/jpeg"}))
    check_error(srv, "POST", "/v1/search?bbox=5,5,1,1", 400, "invalid_parameter", "search: bad bbox",
                img0, dict(S, **{"Content-Type": "image/jpeg"}))
    check_error(srv, "POST", "/v1/search?filter=%7Bx", 400, "invalid_json", "search: filter not JSON",
                img0, dict(S, **{"Content-Type": "image/jpeg"}))
    check_error(srv, "POST", "/v1/search", 401, "unauthorized", "search: wrong token",
                img0, {"Content-Type": "image/jpeg", "Authorization": "Bearer nope"})
    bc, mc = multipart([("external_id", b"bad"), ("image", corrupt, "image/jpeg", "c.jpg")])
    check_error(srv, "POST", "/v1/images", 400, "invalid_image", "add: corrupt JPEG", bc, dict(mc, **A))
    bb, mb = multipart([("external_id", b"bomb"), ("image", bomb, "image/jpeg", "b.jpg")])
    check_error(srv, "POST", "/v1/images", 413, "image_too_large", "add: pixel bomb", bb, dict(mb, **A))
    check_error(srv, "POST", "/v1/images", 401, "unauthorized", "add: no token", b, mh)
    check_error(srv, "POST", "/v1/images", 403, "forbidden", "add: search token", b, dict(mh, **S))
    bj, mj = multipart([("metadata", b"{oops"), ("image", crop_png, "image/png")])
    check_error(srv, "POST", "/v1/images", 400, "invalid_json", "add: metadata not JSON", bj,
                dict(mj, **A))
    code, rec = jget(srv, "/v1/info", {})
    is_eq(rec.get("index", {}).get("size"), len(names) + 1, "failed adds stored nothing")

    # ---- unknown ids, bad ids ----
    check_error(srv, "GET", "/v1/images/999999", 404, "not_found", "GET unknown image", None, S)
    check_error(srv, "GET", "/v1/images/999999/thumbnail", 404, "not_found", "unknown thumbnail",
                None, S)
    check_error(srv, "DELETE", "/v1/images/999999", 404, "not_found", "DELETE unknown image", None, A)
    check_error(srv, "DELETE", "/v1/images/x", 400, "invalid_parameter", "DELETE bad id", None, A)
    check_error(srv, "DELETE", "/v1/images/%d" % crop_id, 403, "forbidden", "DELETE with the search token",
                None, S)

    # ---- delete: gone from results at once ----
    victim = names[1]
    vid = ids.get(victim, 0)
    vimg = open(os.path.join(photos, victim), "rb").read()
    r, data = srv.request("DELETE", "/v1/images/%d" % vid, None, A)
    is_eq((r.status, data), (204, b""), "DELETE /v1/images/{id} -> 204, no body")
    code, res = search(srv, vimg, "?k=100", ctype_of(victim))
    got = [x["id"] for x in res.get("results", [])]
    ok(code == 200 and vid not in got and len(got) == len(names),
       "the deleted image is absent from the next search", got[:5])
    check_error(srv, "GET", "/v1/images/%d" % vid, 404, "not_found", "GET deleted image", None, S)
    check_error(srv, "DELETE", "/v1/images/%d" % vid, 404, "not_found", "DELETE twice", None, A)

    # ---- a manifest job with metadata ----
    man = os.path.join(root, "list.jsonl")
    with open(man, "w") as f:
        f.write(json.dumps({"path": "photos/" + names[2], "external_id": "m-1",
                            "metadata": {"set": "manifest", "i": 1}}) + "\n")
        f.write(json.dumps({"path": "photos/" + names[3], "external_id": "m-2",
                            "metadata": {"set": "manifest", "i": 2}}) + "\n")
        f.write(json.dumps({"path": "photos/missing.jpg", "external_id": "m-3"}) + "\n")
    r, data = srv.request("POST", "/v1/admin/jobs", json.dumps({"source": {"manifest": man}}).encode(), J)
    mid = json.loads(data).get("job_id", 0) if r.status == 202 else 0
    st = wait_job(srv, mid)
    is_eq((st.get("state"), st.get("total"), st.get("done"), st.get("failed")),
          ("done", 3, 2, 1), "manifest job: 2 done, the missing file failed")
    n3 = open(os.path.join(photos, names[3]), "rb").read()
    code, res = search(srv, n3, "?k=5&filter=" + urllib.parse.quote('{"set":"manifest"}'),
                       ctype_of(names[3]))
    is_eq((code, [x["external_id"] for x in res.get("results", [])][:1],
           sorted(x["metadata"]["i"] for x in res.get("results", []))),
          (200, ["m-2"], [1, 2]), "manifest metadata is searchable with a filter")

    # ---- cancel a running job ----
    flips = os.path.join(root, "flips")
    os.makedirs(flips)
    for n in names[:8]:
        Image.open(os.path.join(photos, n)).convert("RGB").transpose(
            Image.FLIP_TOP_BOTTOM).save(os.path.join(flips, n.rsplit(".", 1)[0] + ".png"))
    r, data = srv.request("POST", "/v1/admin/jobs", json.dumps({"source": {"dir": flips}}).encode(), J)
    cid = json.loads(data).get("job_id", 0) if r.status == 202 else 0
    r, data = srv.request("DELETE", "/v1/admin/jobs/%d" % cid, None, A)
    cst = json.loads(data) if r.status == 200 else {}
    is_eq((r.status, cst.get("state")), (200, "cancelled"), "DELETE a running job -> 200 cancelled")
    time.sleep(1.0)
    code, cst = jget(srv, "/v1/admin/jobs/%d" % cid, A)
    ok(code == 200 and cst.get("state") == "cancelled" and (cst.get("done") or 0) < 8,
       "a cancelled job stays cancelled and stops early (%s of 8 done)" % cst.get("done"), cst)
    check_error(srv, "DELETE", "/v1/admin/jobs/%d" % cid, 409, "conflict", "cancel twice", None, A)

    # ---- reindex job (compaction) ----
    r, data = srv.request("POST", "/v1/admin/reindex", b"{}", J)
    rid = json.loads(data).get("job_id", 0) if r.status == 202 else 0
    st = wait_job(srv, rid)
    is_eq((r.status, st.get("kind"), st.get("state")), (202, "reindex", "done"),
          "POST /v1/admin/reindex -> 202, a reindex job that completes")
    code, res = search(srv, vimg, "?k=100", ctype_of(victim))
    ok(code == 200 and vid not in [x["id"] for x in res.get("results", [])],
       "after compaction the deleted image stays gone")

    # ---- metrics ----
    r, data = srv.request("GET", "/metrics")
    text = data.decode()
    code, cst = jget(srv, "/v1/admin/jobs/%d" % cid, A)
    flips_done = cst.get("done") or 0  # items already in flight when it was cancelled
    size_now = len(names) + 1 - 1 + 2 + flips_done
    ok("imago_index_images %d\n" % size_now in text and "imago_search_requests_total " in text
       and 'imago_jobs_total{outcome="done"} 3' in text
       and 'imago_jobs_total{outcome="cancelled"} 1' in text
       and 'imago_job_items_total{outcome="failed"} 2' in text,
       "metrics: index size, searches, jobs, item outcomes", text[-1500:])

    # ---- shutdown snapshots; restart keeps everything ----
    rc, log = srv.stop()
    snap = os.path.join(data_dir, "index.snap")
    ok(rc == 0 and os.path.exists(snap), "SIGTERM -> exit 0 and an index snapshot", log[-800:])
    srv = hc.Server(imago, data_dir, common)
    r, data = srv.wait_ready()
    code, info = jget(srv, "/v1/info", {})
    is_eq((r.status, info.get("index", {}).get("size")), (200, size_now),
          "restart: same collection size")
    code, res = search(srv, img0, "?k=1", ctype_of(names[0]))
    is_eq((code, res.get("results", [{}])[0].get("external_id")), (200, "photos/" + names[0]),
          "restart: search works from the snapshot")
    # `imago search --server` (raw HTTP client) against the running server
    cli = subprocess.run([imago, "search", os.path.join(photos, names[0]), "--server",
                          "http://127.0.0.1:%d" % srv.port, "-k", "2", "--token", SRCH],
                         capture_output=True, text=True, timeout=120)
    got = json.loads(cli.stdout).get("results", [{}]) if cli.returncode == 0 else [{}]
    is_eq((cli.returncode, got[0].get("external_id")), (0, "photos/" + names[0]),
          "imago search --server URL -> the server's JSON, itself first")
    rc, log = srv.stop()
    # offline: the same data dir in-process
    eng = ["--engine.demo-arch", "resnet50-gem", "--engine.max-side", "128", "--engine.scales", "1"]
    cli = subprocess.run([imago, "search", os.path.join(photos, names[0]), "--data-dir", data_dir,
                          "-k", "3"] + eng, capture_output=True, text=True, timeout=120)
    first = (cli.stdout.splitlines() or [""])[0].split()
    ok(cli.returncode == 0 and len(first) >= 4 and first[0] == "1" and first[3] == "photos/" + names[0],
       "imago search --data-dir (offline) -> rank 1 is the photo itself", cli.stdout + cli.stderr[-300:])
    small = os.path.join(tmp, "small")
    os.makedirs(small)
    for n in names[:3]:
        shutil.copy(os.path.join(photos, n), small)
    cli = subprocess.run([imago, "index", small, "--data-dir", os.path.join(tmp, "data2")] + eng,
                         capture_output=True, text=True, timeout=180)
    ok(cli.returncode == 0 and "done: 3 images indexed, 0 failed" in cli.stdout
       and "indexed 3/3" in cli.stdout,
       "imago index DIR (not a TTY: plain progress lines) -> 3 images", cli.stdout + cli.stderr[-300:])
    cli = subprocess.run([imago, "index", small, "--data-dir", os.path.join(tmp, "data2")] + eng,
                         capture_output=True, text=True, timeout=180)
    ok(cli.returncode == 0 and "holds 3 images" in cli.stdout,
       "imago index again: nothing indexed twice", cli.stdout + cli.stderr[-300:])

    # ---- another model on the same store: refused with the reindex path ----
    args = [imago, "serve", "--port", "0", "--server.listen", "127.0.0.1", "--index.data-dir",
            data_dir, "--engine.demo-arch", "resnet50-agem", "--engine.max-side", "64",
            "--engine.scales", "1", "--auth.admin-token", ADM]
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    ok(p.returncode != 0 and "index the collection again" in p.stderr
       and "not comparable" in p.stderr,
       "a store built with another model -> refuses to start, names the reindex path",
       (p.returncode, p.stderr[-600:]))
    return hc.done(tmp)


if __name__ == "__main__":
    hc.run(main)
