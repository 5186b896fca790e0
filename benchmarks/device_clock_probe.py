"""On the GPU machine (H200), what sets the GPU's clock when a fix keeps it busier: samples NVML every 10 ms (SM clock,
power draw, temperature, clock event reasons: bit 0x4 = SwPowerCap) while it runs the cuda_sync examples slow and
fixed (300 requests each) and elementwise_fusion.py, then a duty-cycle sweep of one kernel (8192^3 bf16 matmul, then
a 512 MB fp16 add: 5 ms bursts timed with CUDA events, idle between bursts for duty 1, 0.9, 0.75, 0.5; 4 s each).
Writes OUT/nvml.csv and OUT/phases.json. Results: docs/clock.md. This is the exact program that ran (2026-12-02, sent
inline, compressed, because the device machine gets a copy of the main checkout, not of this branch); not a test.

usage (device machine, repository root): python3 benchmarks/device_clock_probe.py OUT
"""
import json,os,subprocess as S,sys,threading as T,time,pynvml as N,torch
N.nvmlInit();h=N.nvmlDeviceGetHandleByIndex(0);R=[];st=T.Event();P=[];t=time.time
def smp():
 while not st.is_set():
  R.append((t(),N.nvmlDeviceGetClockInfo(h,N.NVML_CLOCK_SM),N.nvmlDeviceGetPowerUsage(h)/1e3,N.nvmlDeviceGetTemperature(h,0),N.nvmlDeviceGetCurrentClocksEventReasons(h)));time.sleep(.01)
th=T.Thread(target=smp);th.start();time.sleep(1)
for p in["sleep_poll.py","sleep_poll.py --fixed","layer_timing_sync.py --batch 96","layer_timing_sync.py --batch 96 --fixed","elementwise_fusion.py --requests 4000"]:
 a=p.split();a[0]="examples/"+a[0];q0=t();r=S.run([sys.executable]+a+(["--requests","300"]if"--req"not in p else[]),capture_output=True,text=True);P.append((p,q0,t(),r.stdout[-400:],r.stderr[-300:]));time.sleep(2)
for k in("mm","add"):
 if k=="mm":x=torch.randn(8192,8192,device="cuda",dtype=torch.bfloat16);f=lambda:x@x
 else:x=torch.randn(256<<20,device="cuda",dtype=torch.half);f=lambda:x+x
 for _ in range(20):f()
 torch.cuda.synchronize();E=torch.cuda.Event;q=t()
 for _ in range(10):f()
 torch.cuda.synchronize();n=max(1,round(.005/((t()-q)/10)))
 for d in(1,.9,.75,.5):
  q=t();L=[]
  while t()-q<4:
   s,e=E(enable_timing=1),E(enable_timing=1);s.record()
   for _ in range(n):f()
   e.record();e.synchronize();m=s.elapsed_time(e);L.append(m/n);time.sleep(m/1e3*(1-d)/d)
  P.append((f"{k} {d}",q,t(),L));time.sleep(1)
st.set();th.join();o=sys.argv[1]
open(o+"/nvml.csv","w").write("t,mhz,w,c,why\n"+"".join(",".join(map(str,r))+"\n"for r in R))
json.dump(P,open(o+"/phases.json","w"))
