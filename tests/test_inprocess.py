"""The in-process runner (tests/inprocess.py): what a process would print is captured, exit statuses
are a process's, and the test process is left as it was found. (That a training run through it is the
fresh process's bit for bit: tests/test_train.py.)"""

import logging
import os
import sys
import warnings

from conftest import ROOT
from inprocess import run_main


def test_what_a_process_would_print_is_captured_and_the_test_process_left_alone():
    def main(argv):
        print("out", argv)
        print("err", file=sys.stderr)
        logging.getLogger("somelib").warning("a library's warning")  # logging's last resort: stderr
        warnings.warn("twice from one line", UserWarning, stacklevel=1)
        assert os.getcwd() == str(ROOT / "tests") and os.environ["NERFORGE_PROBE"] == "1"
        if argv == ["boom"]:
            raise RuntimeError("unexpected")
        raise SystemExit(argv[0] if argv[0] != "3" else 3)

    root = logging.getLogger()
    before = (list(root.handlers), root.level, os.getcwd(), os.umask(0o077))
    os.umask(before[3])
    probe = {"NERFORGE_PROBE": "1"}
    for _ in range(2):  # warnings once per location per process, as in a fresh one each time
        p = run_main(main, ["3"], env=probe, cwd=ROOT / "tests")
        assert (p.returncode, p.stdout) == (3, "out ['3']\n")
        assert p.stderr.splitlines()[0] == "err" and "a library's warning" in p.stderr
        assert p.stderr.count("UserWarning: twice from one line") == 1
    p = run_main(main, ["boom"], env=probe, cwd=ROOT / "tests")
    assert p.returncode == 1 and "Traceback" in p.stderr and "RuntimeError: unexpected" in p.stderr
    p = run_main(main, ["x"], env=probe, cwd=ROOT / "tests")  # SystemExit("x"): printed, exit status 1
    assert p.returncode == 1 and p.stderr.splitlines()[-1] == "x"
    assert "NERFORGE_PROBE" not in os.environ
    assert (list(root.handlers), root.level, os.getcwd(), os.umask(0o022)) == before
    os.umask(before[3])
