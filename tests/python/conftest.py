import os
import sys

# The training-checkpoint corpus is shared with the interop tests.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "interop"))
