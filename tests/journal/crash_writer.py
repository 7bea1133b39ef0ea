"""Appends events forever, printing each seq after its commit returns.

Run by test_crash.py and killed with SIGKILL at random moments.
"""

import sys

from gateway.journal import Journal

journal = Journal.open(sys.argv[1])
print("ready", flush=True)
while True:
    event = journal.append(
        {"kind": "decision", "gate": "crash", "decision": "admit", "reasons": ["ok"],
         "detail": {"pad": "x" * 300}}
    )
    print(event["seq"], flush=True)
