"""recguard.release_memory: collects cycles and trims the heap without loading torch."""

import subprocess
import sys


def test_release_memory_frees_cycles_and_leaves_torch_unloaded():
    code = (
        "import gc, sys, weakref\n"
        "from recguard import release_memory\n"
        "class Node: pass\n"
        "a, b = Node(), Node(); a.other, b.other = b, a\n"
        "gc.disable(); alive = weakref.ref(a); del a, b\n"
        "assert alive() is not None\n"
        "release_memory()\n"
        "assert alive() is None, 'the cycle outlived release_memory'\n"
        "assert 'torch' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
