"""The Iskra OCMF driver's pure parts under the firmware: a JSON request per stdin line, a JSON line out.

{"der": hex} -> {"der": minimal DER hex}; {"meta": StartTransactionRequest} -> {"meta": text} or {"error"}.
The profile path is the first argument.
"""

import json
import sys

from meterbridge import profile
from meterbridge.ocmf import SignedTransactions
from meterbridge.ocmf.iskra import Iskra, minimal_der

driver = Iskra(*SignedTransactions(None, None, profile.load(sys.argv[1]).ocmf, None, 1).meter)
while True:
    line = sys.stdin.readline()
    if not line.strip():
        break
    case = json.loads(line)
    if "der" in case:
        print(json.dumps({"der": minimal_der(bytes.fromhex(case["der"]))}))
        continue
    try:
        print(json.dumps({"meta": driver.metadata(case["meta"])}))
    except ValueError as e:
        print(json.dumps({"error": str(e)}))
