"""Runs one integration test file for ctest and says what happened in its exit code.

    python3 run_test.py test_transports

Exit 0: every test passed. Exit 77 (the ctest SKIP_RETURN_CODE): none failed but at
least one was skipped, so ctest reports the file as skipped instead of passed. Exit 1:
a test failed or errored, or the file ran no test at all. The last line printed is
"<file>: N passed, N failed, N skipped". Each skip (test id and reason) is also
appended to $RNGMUX_TEST_LOGS/skipped.txt, and each failure (test id and the last lines
of its traceback) to $RNGMUX_TEST_LOGS/failed.txt, for the summary of scripts/test.sh.
"""

import os
import sys
import unittest

SKIP_RETURN_CODE = 77
TRACE_LINES = 12  # of each failure's traceback, for the summary


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: %s TEST_MODULE\n" % argv[0])
        return 2
    name = argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    os.chdir(here)
    suite = unittest.defaultTestLoader.loadTestsFromName(name)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stderr).run(suite)

    failed = (len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses))
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped - len(result.expectedFailures)
    for test, reason in result.skipped:
        sys.stderr.write("SKIPPED %s: %s\n" % (test.id(), reason))
    logs = os.environ.get("RNGMUX_TEST_LOGS")
    if logs and skipped:
        os.makedirs(logs, exist_ok=True)
        with open(os.path.join(logs, "skipped.txt"), "a") as f:
            for test, reason in result.skipped:
                f.write("%s: %s\n" % (test.id(), reason))
    if logs and failed:
        os.makedirs(logs, exist_ok=True)
        with open(os.path.join(logs, "failed.txt"), "a") as f:
            for test, trace in result.failures + result.errors:
                lines = trace.rstrip().splitlines()
                f.write("%s:\n" % test.id())
                for line in lines[-TRACE_LINES:]:
                    f.write("    %s\n" % line)
    sys.stderr.write("%s: %d passed, %d failed, %d skipped\n" % (name, passed, failed, skipped))
    sys.stderr.flush()
    if failed or result.testsRun == 0:
        return 1
    return SKIP_RETURN_CODE if skipped else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
