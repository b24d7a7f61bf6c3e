#!/usr/bin/env python3
# benches/pty-attach-ab.py: attach to a session that printed 10,000 lines,
# a writing attach against `attach --read-only`, of one binary B (env,
# default /tmp/ab/rp-dbg): the time from spawning attach to "line 10000"
# on its terminal, 10 of each, interleaved. Run as benches/pty-ab.py is:
#   tests/sandbox/with-user-manager --user refine-test -- \
#       env B=/tmp/ab/rp-after /usr/bin/python3 benches/pty-attach-ab.py
import os, sys, time, json, subprocess, statistics
exec(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pty-ab.py")).read().split("state=f")[0])  # spawn, read_until
state="/tmp/ab/st-att"+os.path.basename(os.environ.get("B","dbg"))
B=os.environ.get("B","/tmp/ab/rp-dbg")
def rp(*a): return ["env",f"REFINE_PROC_HOOK={B}",B,"--state-dir",state,*a]
lines="seq -f 'line %g' 1 10000; echo END$((6*7))MARK; read -r l"
sid=json.loads(subprocess.run(rp("run","--pty","--json","--","bash","-c",lines),capture_output=True,text=True,check=True).stdout)["id"]
subprocess.run(rp("screen",sid,"--wait-for","END42MARK","--timeout","60s"),capture_output=True,check=True)
at={"writer":[],"read-only":[]}
for i in range(10):
    for k in at:
        argv=rp("attach",sid) if k=="writer" else rp("attach","--read-only",sid)
        t0=time.time(); pid,fd=spawn(argv)
        ok=read_until(fd,b"line 10000",20); at[k].append(time.time()-t0)
        os.kill(pid,9); os.waitpid(pid,0); os.close(fd)
for k,v in at.items(): print(f"{B} attach {k:9s} median {statistics.median(v)*1000:.1f} ms")
subprocess.run(rp("stop",sid),capture_output=True)
