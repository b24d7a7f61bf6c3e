#!/usr/bin/env python3
# benches/pty-viewer.py: what a read-only viewer costs when its window is
# not the session's size (it then draws the screen from a model of its own,
# src/pty/view.rs) against one of the session's size (output passed
# through): the time from `send` to the viewer showing the end of a `cat`
# of TEXT (default /tmp/ab/text, e.g. 100 MiB of numbered lines), REPS (3)
# of each, interleaved. Binaries: A and B (env), each at both sizes, a
# session each; then each viewer's CPU time.
#
#   tests/sandbox/with-user-manager --user refine-test -- \
#       env A=/tmp/ab/rp-before B=/tmp/ab/rp-after /usr/bin/python3 benches/pty-viewer.py
import os, sys, time, json, subprocess, statistics
exec(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pty-ab.py")).read().split("state=f")[0])  # spawn, read_until, drain
import struct, fcntl, termios
DIR=os.environ.get("DIR","/tmp/ab")
TEXT=os.environ.get("TEXT",DIR+"/text")
# The mark names the line sent: a viewer that draws from its model redraws
# the screen, and so the previous mark, on its first frame.
CAT=f"while read -r l; do cat {TEXT}; echo \"END-$l-MARK\"; done"
bins={k:os.environ[k] for k in ("A","B") if k in os.environ}
runs={}
for k,b in bins.items():
    state=f"{DIR}/st-viewer-{k}-{os.getpid()}"
    rp=lambda *a, b=b, state=state: ["env",f"REFINE_PROC_HOOK={b}",b,"--state-dir",state,*a]
    for rows,cols in ((24,80),(50,160)):
        # A session each, watched by one viewer: no client competes.
        sid=json.loads(subprocess.run(rp("run","--pty","--json","--","bash","-c",CAT),capture_output=True,text=True,check=True).stdout)["id"]
        pid,fd=spawn(rp("attach","--read-only",sid))
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH",rows,cols,0,0))
        os.kill(pid, 28)  # SIGWINCH: the window is set after the spawn
        runs[(k,rows,cols)]=(rp,sid,pid,fd)
time.sleep(1)
for v in runs.values(): drain(v[3])
res={k:[] for k in runs}
for rep in range(int(os.environ.get("REPS","3"))):
    for key in (list(runs) if rep%2==0 else list(runs)[::-1]):
        rp,sid,pid,fd=runs[key]
        t0=time.time()
        subprocess.run(rp("send",sid,f"k{rep}\n"),check=True,capture_output=True)
        ok=read_until(fd,f"END-k{rep}-MARK".encode(),600); res[key].append(time.time()-t0 if ok else float("nan"))
        for v in runs.values(): drain(v[3],0.2)
for (k,rows,cols),v in res.items():
    print(f"{bins[k]} viewer {rows}x{cols}: median {statistics.median(v):.2f} s of {len(v)} ({', '.join(f'{x:.2f}' for x in v)})")
# What each viewer's drawing cost it: its CPU time over all the cats.
for key,(rp,sid,pid,fd) in runs.items():
    os.kill(pid,9); _,_,ru=os.wait4(pid,0)
    k,rows,cols=key
    print(f"{bins[k]} viewer {rows}x{cols}: CPU {ru.ru_utime+ru.ru_stime:.2f} s")
for rp,sid,pid,fd in runs.values():
    subprocess.run(rp("stop",sid),capture_output=True)
