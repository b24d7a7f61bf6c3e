#!/usr/bin/env python3
# benches/pty-ab.py: an A/B of terminal sessions in one run, against tmux:
# the `cat` of 100 MB through an attached client (refine-proc built
# before and after a change, and tmux, interleaved), attach to a session
# that printed 10,000 lines, and the holders' memory. For when the bench
# binary cannot be rebuilt in time (benches/pty.rs measures the same
# things, for one refine-proc binary).
#
#   mkdir /tmp/ab; cp OLD /tmp/ab/rp-before; cp NEW /tmp/ab/rp-after
#   # /tmp/ab/text: 100 MiB of numbered 100-byte lines (text_file in benches/pty.rs)
#   chown -R refine-test: /tmp/ab
#   tests/sandbox/with-user-manager --user refine-test -- \
#       /usr/bin/python3 benches/pty-ab.py
#
# REPS (3) cats each, ATT (10) attaches each. It measures, never asserts.
import os, pty, sys, time, json, subprocess, select, struct, fcntl, termios
MARK=b"END42MARK"; TEXT="/tmp/ab/text"
CAT=f"while read -r l; do cat {TEXT}; echo END$((6*7))MARK; done"
def spawn(argv):
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"]="xterm-256color"
        os.execvp(argv[0], argv)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH",24,80,0,0))
    return pid, fd
def read_until(fd, mark, limit):
    t0=time.time(); carry=b""
    while time.time()-t0<limit:
        r,_,_=select.select([fd],[],[],1)
        if not r: continue
        d=os.read(fd,1<<16)
        if not d: return False
        if mark in carry+d: return True
        carry=(carry+d)[-32:]
    return False
def drain(fd, quiet=0.3):
    while select.select([fd],[],[],quiet)[0]:
        try: os.read(fd,1<<16)
        except OSError: return
state=f"/tmp/ab/state-{os.getpid()}"
def rp(b,*a): return ["env",f"REFINE_PROC_HOOK=/tmp/ab/rp-{b}",f"/tmp/ab/rp-{b}","--state-dir",state+b,*a]
clients={}
for b in ("before","after"):
    out=subprocess.run(rp(b,"run","--pty","--json","--","bash","-c",CAT),capture_output=True,text=True,check=True).stdout
    sid=json.loads(out)["id"]
    clients[b]=(sid,)+spawn(rp(b,"attach",sid))
sock=f"ab{os.getpid()}"
T=["tmux","-L",sock,"-f","/dev/null"]
subprocess.run(T+["new-session","-d","-s","cat","-x","80","-y","24","bash","-c",CAT],check=True)
subprocess.run(T+["set-option","-g","status","off"],check=True)
clients["tmux"]=("cat",)+spawn(T+["attach-session","-t","cat"])
time.sleep(1)
for k,(sid,pid,fd) in clients.items(): drain(fd)
res={k:[] for k in clients}
order=["before","after","tmux"]
for rep in range(int(os.environ.get("REPS","3"))):
    for k in (order if rep%2==0 else order[::-1]):
        sid,pid,fd=clients[k]
        t0=time.time(); os.write(fd,b"\r")
        ok=read_until(fd,MARK,600)
        res[k].append(time.time()-t0)
        drain(fd,0.5)
        print(k, rep, "%.2fs"%res[k][-1], "ok" if ok else "TIMEOUT", flush=True)
import statistics
for k,v in res.items():
    m=statistics.median(v); print(f"{k:7s} median {m:.2f}s  {100/m:.1f} MB/s  runs {['%.2f'%x for x in v]}")
print("ratio after/tmux %.2fx, before/tmux %.2fx"%(statistics.median(res['after'])/statistics.median(res['tmux']), statistics.median(res['before'])/statistics.median(res['tmux'])))
# attach time, 10k lines
lines="seq -f 'line %g' 1 10000; echo END$((6*7))MARK; read -r l"
ids={}
for b in ("before","after"):
    out=subprocess.run(rp(b,"run","--pty","--json","--","bash","-c",lines),capture_output=True,text=True,check=True).stdout
    ids[b]=json.loads(out)["id"]
    subprocess.run(rp(b,"screen",ids[b],"--wait-for","END42MARK","--timeout","60s"),capture_output=True,check=True)
subprocess.run(T+["new-session","-d","-s","l0","-x","80","-y","24","bash","-c","seq -f 'line %g' 1 10000; echo END$((6*7))MARK; tmux wait-for -S l0; read -r l"],check=True)
subprocess.run(T+["wait-for","l0"],check=True)
at={"before":[],"after":[],"tmux":[]}
for i in range(int(os.environ.get("ATT","10"))):
    for k in order:
        argv = T+["attach-session","-t","l0"] if k=="tmux" else rp(k,"attach",ids[k])
        t0=time.time(); pid,fd=spawn(argv)
        ok=read_until(fd,b"line 10000",20); at[k].append(time.time()-t0)
        os.kill(pid,9); os.waitpid(pid,0); os.close(fd)
for k,v in at.items():
    print(f"attach {k:7s} median {statistics.median(v)*1000:.1f} ms")
for b in ("before","after"):
    out=subprocess.run(rp(b,"status","--json",ids[b]),capture_output=True,text=True).stdout
    hp=json.loads(out)["pid"]
    sm=open(f"/proc/{hp}/smaps_rollup").read()
    print("memory",b," ".join(l.replace(" ","") for l in sm.splitlines() if l.split(":")[0] in ("Rss","Pss","Private_Clean","Private_Dirty")))
subprocess.run(T+["kill-server"])
for b in ("before","after"):
    subprocess.run(rp(b,"stop","--all"),capture_output=True)
