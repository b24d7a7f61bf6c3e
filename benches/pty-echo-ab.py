#!/usr/bin/env python3
# benches/pty-echo-ab.py: keystroke echo, interleaved in one run, through
# every path a key can take (the median and p10/p90 of N keys each):
#   attach   a pty -> `refine-proc attach` (lends its terminal to the holder)
#   relay    the same with REFINE_PROC_ATTACH_RELAY=1 (every byte through attach)
#   hunit    a raw protocol client on the session socket (no attach at all)
#   hdirect  the same, the holder started directly (not in a unit)
#   tmux     a pty -> `tmux attach`
# Each session runs `cat >/dev/null`: the line discipline echoes.
#
#   tests/sandbox/with-user-manager --user refine-test -- env \
#       B=/path/to/release/refine-proc MODES=attach,relay,tmux N=400 \
#       /usr/bin/python3 benches/pty-echo-ab.py
#
# B must be readable by the sandbox user (copy it to /tmp). It measures,
# never asserts.
import os, sys, time, json, subprocess, select, socket, struct, pty, fcntl, termios, random, statistics
B=os.environ.get("B","/tmp/ab/rp-cur"); N=int(os.environ.get("N","300")); IV=float(os.environ.get("IV","10"))
state=f"/tmp/ab/st-echo3-{os.getpid()}"
QUIET="stty -echoctl; exec cat >/dev/null"
def rp(*a): return ["env",f"REFINE_PROC_HOOK={B}",B,"--state-dir",state,*a]
def spawn(argv):
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"]="xterm-256color"; os.execvp(argv[0], argv)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH",24,80,0,0)); return pid, fd
def drain(fd, quiet=0.3):
    while select.select([fd],[],[],quiet)[0]:
        try:
            if not os.read(fd,1<<16): return
        except OSError: return
def frame(k,p): return bytes([k])+struct.pack(">I",len(p))+p
def raw_client(path):
    s=socket.socket(socket.AF_UNIX)
    for i in range(100):
        try: s.connect(path); break
        except OSError: time.sleep(0.05)
    s.sendall(frame(ord('H'),json.dumps({"version":1,"mode":"attach","rows":24,"cols":80}).encode()))
    drain(s.fileno(),0.5)
    def probe(key):
        t0=time.perf_counter(); s.sendall(frame(ord('i'),key)); buf=b""
        while key not in buf[5:]:
            if not select.select([s],[],[],5)[0]: sys.exit("hdirect/hunit: no echo in 5 s")
            buf+=s.recv(4096)
        return time.perf_counter()-t0
    return probe
def pty_client(fd):
    drain(fd,0.5)
    def probe(key):
        t0=time.perf_counter(); os.write(fd,key)
        while True:
            if not select.select([fd],[],[],5)[0]: sys.exit("pty: no echo in 5 s")
            if key in os.read(fd,4096): break
        return time.perf_counter()-t0
    return probe
modes=os.environ.get("MODES","hunit,attach,tmux").split(",")
probes={}; cleanup=[]
if "hdirect" in modes:
    p=subprocess.Popen([B,"pty-hold","--socket",f"/tmp/ab/h{os.getpid()}.sock","--rows","24","--cols","80","--","/usr/bin/sh","sh","-c",QUIET],stdout=subprocess.DEVNULL)
    cleanup.append(p.kill); probes["hdirect"]=raw_client(f"/tmp/ab/h{os.getpid()}.sock")
sids=[]
def session():
    sid=json.loads(subprocess.run(rp("run","--pty","--json","--","sh","-c",QUIET),capture_output=True,text=True,check=True).stdout)["id"]
    subprocess.run(rp("screen",sid),capture_output=True); sids.append(sid); return sid
if "hunit" in modes:
    sid=session()
    probes["hunit"]=raw_client(json.loads(subprocess.run(rp("status",sid,"--json"),capture_output=True,text=True).stdout)["pty"]["socket"])
if "attach" in modes:
    argv=rp("attach",session())
    if os.environ.get("STRACE"): argv=["strace","-f","-tt","-T","-o","/tmp/ab/attach.strace"]+argv
    pid,fd=spawn(argv); time.sleep(0.5); probes["attach"]=pty_client(fd)
if "relay" in modes:
    pid3,fd3=spawn(["env","REFINE_PROC_ATTACH_RELAY=1"]+rp("attach",session())); time.sleep(0.5); probes["relay"]=pty_client(fd3)
if "tmux" in modes:
    T=["tmux","-L",f"e{os.getpid()}","-f","/dev/null"]
    subprocess.run(T+["new-session","-d","-s","e","-x","80","-y","24",QUIET],check=True)
    subprocess.run(T+["set-option","-g","status","off"],check=True)
    pid2,fd2=spawn(T+["attach-session","-t","e"]); time.sleep(0.5); probes["tmux"]=pty_client(fd2)
    cleanup.append(lambda: subprocess.run(T+["kill-server"]))
res={k:[] for k in probes}
order=list(probes)
for i in range(N):
    for k in (order if i%2==0 else order[::-1]):
        key=bytes([ord('a')+i%26])
        if i and i%40==0: probes[k](b"\r")
        time.sleep((IV+random.random()*IV/2)/1000)
        res[k].append(probes[k](key)*1000)
for k,v in res.items():
    v.sort(); print(f"{k:8s} median {statistics.median(v):.3f} ms  p10 {v[len(v)//10]:.3f}  p90 {v[len(v)*9//10]:.3f}")
if "tmux" in res:
    for k in res:
        if k!="tmux": print(f"{k}/tmux {statistics.median(res[k])/statistics.median(res['tmux']):.2f}x")
for c in cleanup: c()
for sid in sids: subprocess.run(rp("stop",sid),capture_output=True)
