"""Stand-ins for `vllm`, `python -m sglang.launch_server` and `nvidia-smi`, for tests on a
machine without GPUs or engines.

Each fake engine checks the command line and environment the harness gives it against the
flag tables and the values the test policy implies (B = 16, C = 256 in two_class.sli),
refusing anything else with exit 3 and a message; then records what it was given and
execs the emulated engine (`fluidgate engine`) on the port it was told (an SGLang prefill
server also answering the KV bootstrap handshake on its bootstrap port), so readiness, the
gateway and its handoff protocol, the accounting and the cleanup all run for real. Before
the exec it starts a sleeping child of its own that ignores SIGTERM, as a real engine
starts worker processes, so a test can check that the whole process group is stopped,
stragglers included.

Knobs (environment): FAKE_RECORD_DIR (where records go), FAKE_POLICY (the emulator's
timing), FAKE_TIME_SCALE, FAKE_MEMORY (the expected memory share flag value, absent: no
flag), FAKE_GPUS (how many GPUs nvidia-smi lists), FAKE_FAIL (exit 1 after an
out-of-memory message), FAKE_HANG (never listen).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ROOT / "fluidgate" / "controllers" / "flags"

_COMMON = r'''
import json, os, subprocess, sys, time
from pathlib import Path

def fail(message):
    print(f"fake {KIND}: {message}", file=sys.stderr, flush=True)
    sys.exit(3)

def parse(args):
    flags, name = {}, None
    for a in args:
        if a.startswith("--"):
            if a in flags:
                fail(f"{a} given twice")
            name = a
            flags[a] = []
        elif name is None:
            fail(f"stray argument {a!r}")
        else:
            flags[name].append(a)
    return flags

def check_known(flags, table, extra):
    for name, values in flags.items():
        if name in extra:
            takes = True
        elif name in table:
            takes = table[name]["takes_value"]
        else:
            fail(f"{name} is not a {KIND} flag")
        if takes != bool(values):
            fail(f"{name}: values {values} do not fit takes_value={takes}")

def one(flags, name):
    values = flags.get(name)
    if not values or len(values) != 1:
        fail(f"{name} missing or not one value: {values}")
    return values[0]

def expect(flags, name, value):
    if one(flags, name) != value:
        fail(f"{name} is {one(flags, name)!r}, expected {value!r}")

def common_checks(flags, model):
    expect(flags, "--host", "127.0.0.1")
    if not one(flags, "--port").isdigit():
        fail("--port is not a number")
    expect(flags, "--load-format", "dummy")
    expect(flags, "--served-model-name", "fluidgate-model")
    if "--skip-tokenizer-init" not in flags:
        fail("a generated model has no tokenizer: --skip-tokenizer-init expected")
    config = json.loads((Path(model) / "config.json").read_text())
    if config["architectures"] != ["Qwen3ForCausalLM"] or config["hidden_size"] != 1024:
        fail(f"config.json is not qwen3-0.6b's shape: {config}")
    gpus = [str(i) for i in range(int(os.environ.get("FAKE_GPUS", "2")))]
    if os.environ.get("CUDA_VISIBLE_DEVICES") not in gpus:
        fail(f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')} not one of {gpus}")
    if os.environ.get("HF_HUB_OFFLINE") != "1":
        fail("HF_HUB_OFFLINE=1 expected: nothing may be downloaded")

def become_engine(role, port, interval, record, extra=()):
    if os.environ.get("FAKE_FAIL"):
        print("loading model weights", flush=True)
        print("torch.OutOfMemoryError: CUDA out of memory", file=sys.stderr, flush=True)
        sys.exit(1)
    # a worker that ignores SIGTERM: only the group's SIGKILL after its leader left ends it
    sleeper = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    record.update(pid=os.getpid(), sleeper=sleeper.pid, role=role, port=int(port),
                  gpu=os.environ["CUDA_VISIBLE_DEVICES"])
    out = Path(os.environ["FAKE_RECORD_DIR"]) / f"{os.getpid()}.json"
    out.write_text(json.dumps(record))
    if os.environ.get("FAKE_HANG"):
        time.sleep(600)
    os.execv(sys.executable, [sys.executable, "-m", "fluidgate", "engine", "--role", role,
                              "--policy", os.environ["FAKE_POLICY"], "--port", port,
                              "--time-scale", os.environ.get("FAKE_TIME_SCALE", "1"),
                              "--stream-interval", interval, *extra])
'''

_VLLM = r'''
KIND = "vllm"
if len(sys.argv) < 3 or sys.argv[1] != "serve":
    fail(f"expected 'vllm serve MODEL ...', got {sys.argv[1:3]}")
model, flags = sys.argv[2], parse(sys.argv[3:])
table = json.loads((Path(FLAGS) / "vllm-0.33.0.json").read_text())["flags"]
check_known(flags, table, {"--host", "--port"})
common_checks(flags, model)
kv = json.loads(one(flags, "--kv-transfer-config"))
if kv.get("kv_connector") != "NixlConnector":
    fail(f"kv_connector {kv.get('kv_connector')!r}")
role = {"kv_producer": "mixed", "kv_consumer": "solo"}.get(kv.get("kv_role"))
if role is None:
    fail(f"kv_role {kv.get('kv_role')!r}")
expect(flags, "--max-num-seqs", "16")
if role == "mixed":
    expect(flags, "--long-prefill-token-threshold", "256")
    expect(flags, "--max-num-batched-tokens", "272")
    if "--enable-chunked-prefill" not in flags:
        fail("--enable-chunked-prefill expected on a mixed engine")
if "--disable-prefix-caching" not in flags:
    fail("--disable-prefix-caching expected")
memory = os.environ.get("FAKE_MEMORY")
if memory is None and "--gpu-memory-utilization" in flags:
    fail("--gpu-memory-utilization not expected with one engine per GPU")
if memory is not None:
    expect(flags, "--gpu-memory-utilization", memory)
side = os.environ.get("VLLM_NIXL_SIDE_CHANNEL_PORT", "")
if not side.isdigit():
    fail("VLLM_NIXL_SIDE_CHANNEL_PORT must be set to a port")
become_engine(role, one(flags, "--port"), one(flags, "--stream-interval"),
              {"kind": KIND, "side_port": int(side),
               "memory": flags.get("--gpu-memory-utilization")})
'''

_SGLANG = r'''
KIND = "sglang"
flags = parse(sys.argv[1:])
table = json.loads((Path(FLAGS) / "sglang-0.5.23.json").read_text())["flags"]
check_known(flags, table, set())
common_checks(flags, one(flags, "--model-path"))
mode = flags.get("--disaggregation-mode", ["null"])[0]
role = {"prefill": "mixed", "null": "mixed", "decode": "solo"}[mode]
expect(flags, "--max-running-requests", "16")
if role == "mixed":
    expect(flags, "--chunked-prefill-size", "256")
if mode == "prefill" and not one(flags, "--disaggregation-bootstrap-port").isdigit():
    fail("a prefill server needs --disaggregation-bootstrap-port")
if "--disable-radix-cache" not in flags:
    fail("--disable-radix-cache expected")
bootstrap = flags.get("--disaggregation-bootstrap-port")
become_engine(role, one(flags, "--port"), one(flags, "--stream-interval"),
              {"kind": KIND, "mode": mode, "bootstrap": bootstrap},
              ["--bootstrap-port", bootstrap[0]] if bootstrap else [])
'''

_NVIDIA_SMI = r'''
import os, sys
if sys.argv[1:] != ["-L"]:
    sys.exit(9)
for i in range(int(os.environ.get("FAKE_GPUS", "2"))):
    print(f"GPU {i}: Fake H200 (UUID: GPU-fake-{i})")
'''


def _script(path: Path, body: str) -> None:
    path.write_text(f"#!{sys.executable}\nFLAGS = {str(FLAGS)!r}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def install(where: Path, *, vllm: bool = True, sglang: bool = True,
            nvidia_smi: bool = True) -> tuple[Path, Path]:
    """Write the fakes under `where`; (a bin directory for PATH, a directory for PYTHONPATH
    holding the fake `sglang` package)."""
    bin_dir, packages = where / "bin", where / "packages"
    bin_dir.mkdir()
    (packages / "sglang").mkdir(parents=True)
    if vllm:
        _script(bin_dir / "vllm", _COMMON + _VLLM)
    if sglang:
        # SGLang's console script: the harness reads only its #! line, to find the Python
        _script(bin_dir / "sglang", "raise SystemExit('not run by the harness')\n")
        (packages / "sglang" / "__init__.py").write_text("")
        (packages / "sglang" / "launch_server.py").write_text(
            f"FLAGS = {str(FLAGS)!r}\n" + _COMMON + _SGLANG)
    if nvidia_smi:
        _script(bin_dir / "nvidia-smi", _NVIDIA_SMI)
    return bin_dir, packages


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def base_env(bin_dir: Path, packages: Path, records: Path) -> dict[str, str]:
    """The environment of a harness run that finds the fakes first."""
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(packages)]),
               FAKE_RECORD_DIR=str(records),
               FAKE_POLICY=str(ROOT / "examples" / "two_class.sli"))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env
