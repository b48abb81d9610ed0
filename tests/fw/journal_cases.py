"""The firmware's journal on unix storage: commands as JSON lines on stdin, the journal's state out.

Argument 1 is the storage directory. ["save", open, last] saves and prints the state; ["load"]
opens the journal afresh and prints it; ["try", text] writes text as the journal file, opens and prints it;
["churn"] saves new transactions until killed.
"""

import json
import sys

from meterbridge import hal
from meterbridge.journal import Journal

storage = hal.Storage(sys.argv[1])
journal = Journal(storage, "pm1")


def state():
    print(json.dumps({"open": journal.open, "last": journal.last, "seq": journal.seq}))


while True:
    line = sys.stdin.readline()
    if not line.strip():
        break
    cmd = json.loads(line)
    if cmd[0] == "save":
        journal.save(cmd[1], cmd[2])
    elif cmd[0] == "load":
        journal = Journal(storage, "pm1")
    elif cmd[0] == "try":  # a journal file with these contents, then loaded
        storage.write("tx-pm1.json", cmd[1])
        journal = Journal(storage, "pm1")
    else:
        print("churning")
        n = journal.seq
        while True:
            n += 1
            tx = {"tid": "t" + str(n), "evse_id": "1", "t": n, "phase": "running", "meta": "x" * (n % 200)}
            journal.save(tx if n % 2 else None, None if n % 2 else "t" + str(n - 1))
    state()
