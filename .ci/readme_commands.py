"""Fail when the README's commands are no longer the ones .ci/run runs as written."""
import re
import sys

EXPECTED = ["pip install . && mlkernels bench", 'pip install ".[test,demo]" && pytest']
with open("README.md", encoding="utf-8") as f:
    blocks = [b.strip() for b in re.findall(r"```bash\n(.*?)```", f.read(), re.S)]
if blocks[:2] != EXPECTED:
    sys.exit(f"the README's first two commands are now {blocks[:2]}; .ci/run runs {EXPECTED}: "
             f"make them agree")
print("== the README's two commands, as .ci/run runs them:", " ; ".join(EXPECTED))
