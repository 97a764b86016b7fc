"""Ask keyward whether a key your API was given may pass: POST /v1/keys/verify."""
import json
import os
import sys
import urllib.request

KEYWARD_URL = os.environ.get("KEYWARD_URL", "http://127.0.0.1:8080")
SERVICE_KEY = os.environ["KEYWARD_SERVICE_KEY"]  # its agent holds keys:verify


def verify_key(presented_key, capability=None):
    """keyward's answer: {"valid", "code", "message", "key", "agent", "capabilities", "rate_limit"}."""
    body = {"key": presented_key}
    if capability:
        body["capability"] = capability
    request = urllib.request.Request(
        KEYWARD_URL + "/v1/keys/verify",
        data=json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + SERVICE_KEY, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=2) as response:
        return json.load(response)


if __name__ == "__main__":
    # The key comes on stdin, never on the command line (where `ps` would show it).
    answer = verify_key(sys.stdin.readline().strip(), *sys.argv[1:2])
    print(json.dumps({"valid": answer["valid"], "code": answer["code"]}))
