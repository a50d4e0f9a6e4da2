"""Running the console script as users do, and the one-line error contract."""

import subprocess
import sys


def seo_export(*args, cwd=None, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "seo_export.cli.main", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=timeout)


def assert_one_line_stderr(stderr: str, *fragments) -> None:
    """No traceback, exactly one non-empty line, naming every fragment."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_one_line_error(result, *fragments) -> None:
    assert result.returncode != 0
    assert_one_line_stderr(result.stderr, *fragments)
