// Ask keyward whether a key your API was given may pass: POST /v1/keys/verify (Node 18+).
const KEYWARD_URL = process.env.KEYWARD_URL ?? "http://127.0.0.1:8080";
const SERVICE_KEY = process.env.KEYWARD_SERVICE_KEY; // its agent holds keys:verify

// keyward's answer: {valid, code, message, key, agent, capabilities, rate_limit}.
export async function verifyKey(presentedKey, capability) {
  const response = await fetch(`${KEYWARD_URL}/v1/keys/verify`, {
    method: "POST",
    headers: { Authorization: `Bearer ${SERVICE_KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify(capability ? { key: presentedKey, capability } : { key: presentedKey }),
    signal: AbortSignal.timeout(2000),
  });
  if (!response.ok) throw new Error(`keyward answered ${response.status}`);
  return response.json();
}

if (import.meta.url === `file://${process.argv[1]}`) {
  // The key comes on stdin, never on the command line (where `ps` would show it).
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  const answer = await verifyKey(input.trim(), process.argv[2]);
  console.log(JSON.stringify({ valid: answer.valid, code: answer.code }));
}
