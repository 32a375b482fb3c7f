"""Launching N CPU processes the way `torchrun` does, shared by the distributed tests: a free port, an environment
without the launcher's variables (so an outer torchrun never leaks in) and one thread per op."""

import os, socket, sys

_LAUNCHER_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def launch_env(**extra) -> dict:
    "This process's environment without torchrun's variables, one thread per op, plus `extra`."
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_VARS}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def launcher(nproc: int) -> list[str]:
    "The command prefix that runs a script in `nproc` gloo processes (plain python for one)."
    if nproc == 1:
        return [sys.executable]
    return [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
    ]  # fmt: skip
