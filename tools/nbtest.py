"""Run `nbdev-test` and print a plain `N passed, N failed` line for the notebooks it ran.

    python tools/nbtest.py [nbdev-test args ...]

nbdev-test itself prints only "Success." or a list of failing notebooks; CI and humans want a count. Every
argument is passed through to nbdev-test; `--do-print` is added so the notebooks that really ran are counted
(notebooks with `skip_exec: true` return before they start and are not counted). Exit status is nbdev-test's.
"""

import re, subprocess, sys, time


def main(args):
    cmd = ["nbdev-test", "--do-print", *args]
    print("+", " ".join(cmd), flush=True)
    t0 = time.time()
    p = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    started, failed, in_fail_list = set(), set(), False
    for line in p.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        for name in re.findall(r"Starting (\S+?\.ipynb)", line):
            started.add(name.rsplit("/", 1)[-1])  # parallel workers may share a line
        if "Tests Failed On The Following Notebooks" in line:
            in_fail_list = True
        elif in_fail_list and (m := re.match(r"\s+(\S+\.ipynb)\s*$", line)):
            failed.add(m.group(1))
    rc = p.wait()
    if rc and not failed:
        failed.add("<nbdev-test itself>")
    ran = started | failed
    print(
        f"notebooks: {len(ran) - len(failed)} passed, {len(failed)} failed ({time.time() - t0:.0f} s)",
        flush=True,
    )
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
