#!/usr/bin/env python3
"""Replays the attacks of the hardening issue (items 1-3) against a comfy-sentinel binary
and prints what each one does now: status, time, and the sidecar's RSS.

    python3 bench/attacks.py target/release/comfy-sentinel

Loopback only. The sidecar runs with 256 file descriptors, as in the issue. The network
client of item 3 is a test host of its own (a network namespace joined by veth, root
only); without root that part is skipped.
"""
import os, re, socket, subprocess, sys, tempfile, threading, time, urllib.parse, urllib.request


def rss_kib(pid, key="VmRSS"):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return -1


def start(binary, extra=""):
    d = tempfile.mkdtemp()
    cfg = os.path.join(d, "sentinel.yml")
    with open(cfg, "w") as f:
        f.write(f"data_dir: {d}/data\ncollectors:\n  system: {{ enabled: false }}\n{extra}")
    p = subprocess.Popen(["prlimit", "--nofile=256:256", binary, "run", "--listen", "0.0.0.0:0", "--config", cfg],
                         stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"})
    for line in p.stderr:
        m = re.search(r"listen=\"?[0-9.]+:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    time.sleep(1.5)
    return p, port


def http(port, method, path, body=None, headers=None, timeout=60, host="127.0.0.1"):
    req = urllib.request.Request(f"http://{host}:{port}{path}", data=body, method=method, headers=headers or {})
    t = time.time()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            code = r.status
    except urllib.error.HTTPError as e:
        e.read()
        code = e.code
    except Exception as e:  # reset, timeout
        code = type(e).__name__
    return code, time.time() - t


def query(port, q):
    return http(port, "POST", "/api/v1/query", urllib.parse.urlencode({"query": q}).encode(),
                {"Content-Type": "application/x-www-form-urlencoded"})


def cpu_ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def item1(binary):
    print("== item 1: queries")
    p, port = start(binary)
    base = rss_kib(p.pid)
    e = 'label_replace(vector(1), "a", "x", "", "")'
    for _ in range(27):
        e = f'label_replace({e}, "a", "$1$1", "a", "(.*)")'
    code, dt = query(port, e)
    print(f"label_replace x27 ({len(e)} B): {code} in {dt*1000:.0f} ms")
    out = []
    ts = [threading.Thread(target=lambda: out.append(query(port, "sum_over_time(vector(1)[100000d:1ms])"))) for _ in range(3)]
    t = time.time()
    [x.start() for x in ts]
    [x.join() for x in ts]
    print(f"3 x sum_over_time(vector(1)[100000d:1ms]): {[c for c, _ in out]} in {(time.time()-t)*1000:.0f} ms")
    e = "vector(1)"
    for _ in range(150):
        e = f"max_over_time(({e})[1m:1m])"
    code, dt = query(port, e)
    print(f"max_over_time nested 150 deep: {code} in {dt*1000:.1f} ms")
    c0 = cpu_ticks(p.pid)
    time.sleep(2)
    print(f"CPU ticks in the 2 s after: {cpu_ticks(p.pid) - c0}; RSS {base} -> {rss_kib(p.pid)} KiB, peak {rss_kib(p.pid, 'VmHWM')} KiB")
    print("1+1 afterwards:", query(port, "1+1")[0])
    p.kill()


def item2(binary, n=260):
    print(f"== item 2: {n} slow bodies, 256 fds")
    p, port = start(binary)
    slow, t0 = [], time.time()
    for i in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError as e:
            print("connect failed:", e)
            continue
        path, ct = (("/api/v1/events", "application/json") if i % 2 == 0
                    else ("/api/v1/query", "application/x-www-form-urlencoded"))
        framing = "Content-Length: 100000\r\n\r\nabc" if i % 4 < 2 else "Transfer-Encoding: chunked\r\n\r\n10\r\nabc"
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\n{framing}".encode())
        slow.append(s)
    lat = [http(port, "GET", pth, timeout=30) for _ in range(10) for pth in ("/metrics", "/healthz")]
    print(f"/metrics and /healthz under {len(slow)} slow clients: statuses {sorted(set(str(c) for c, _ in lat))}, "
          f"worst {max(d for _, d in lat)*1000:.0f} ms")
    closed = {}
    for s in slow:
        s.settimeout(0.0)
    while len(closed) < len(slow) and time.time() - t0 < 120:
        for s in slow:
            if s in closed:
                continue
            try:
                if s.recv(65536) == b"":
                    closed[s] = time.time() - t0
            except BlockingIOError:
                pass
            except OSError:
                closed[s] = time.time() - t0
        time.sleep(0.2)
    print(f"closed by the server: {len(closed)}/{len(slow)}, the last {max(closed.values(), default=-1):.1f} s after the first connect; "
          f"RSS {rss_kib(p.pid)} KiB")
    p.kill()


def item3(binary):
    print("== item 3: silences and reload")
    p, port = start(binary)
    base = rss_kib(p.pid)
    body = ('{"matchers":[{"name":"alertname","value":"X","isRegex":false,"isEqual":true}],'
            '"startsAt":"2020-01-01T00:00:00Z","endsAt":"2999-01-01T00:00:00Z","createdBy":"a","comment":"'
            + "x" * 1_900_000 + '"}').encode()
    codes, t = [], time.time()
    for _ in range(100):
        codes.append(http(port, "POST", "/api/v1/silences", body, {"Content-Type": "application/json"})[0])
    data = os.path.join(os.path.dirname(os.path.dirname(p.args[-1])), "data")
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(data) for f in fs) if os.path.isdir(data) else 0
    print(f"100 silences with 1.9 MB comments: {sorted(set(codes))} in {time.time()-t:.1f} s; "
          f"RSS {base} -> {rss_kib(p.pid)} KiB; data_dir {size} bytes")
    if os.geteuid() != 0:
        print("not root: the network-client part is skipped")
        p.kill()
        return
    ns, outer, inner = f"attack-{os.getpid()}", f"atk{os.getpid()%100000}o", f"atk{os.getpid()%100000}i"
    run = lambda *a: subprocess.run(["ip", *a], check=True, capture_output=True)
    try:
        run("netns", "add", ns)
        run("link", "add", outer, "type", "veth", "peer", "name", inner)
        run("link", "set", inner, "netns", ns)
        run("addr", "add", "10.233.7.1/24", "dev", outer)
        run("link", "set", outer, "up")
        run("-n", ns, "addr", "add", "10.233.7.2/24", "dev", inner)
        run("-n", ns, "link", "set", inner, "up")
        small = body.replace(b"x" * 1_900_000, b"maintenance")
        for method, path, b in (("POST", "/api/v1/silences", small), ("POST", "/-/reload", b""),
                                ("DELETE", "/api/v1/silences/x", None), ("GET", "/metrics", None)):
            out = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                  "-X", method, "-H", "Content-Type: application/json", *(["--data-binary", "@-"] if b is not None else []),
                                  f"http://10.233.7.1:{port}{path}"], input=b, capture_output=True)
            print(f"{method} {path} from the network (10.233.7.2): {out.stdout.decode()}")
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", outer], capture_output=True)
        p.kill()


if __name__ == "__main__":
    b = sys.argv[1] if len(sys.argv) > 1 else "target/release/comfy-sentinel"
    item1(b)
    item2(b)
    item3(b)
