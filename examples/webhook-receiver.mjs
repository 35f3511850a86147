// A webhook receiver: verifies every message with the standardwebhooks library and handles each
// delivery once. Run: WEBHOOK_SECRET=whsec_… PORT=8080 node examples/webhook-receiver.mjs
import http from 'node:http';
import { Webhook } from 'standardwebhooks';

const wh = new Webhook(process.env.WEBHOOK_SECRET); // the whsec_… from POST /webhooks
const seen = new Set(); // use your database: delivery is at least once

http
  .createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    let event;
    try {
      event = wh.verify(body, req.headers); // checks the signature and the timestamp (±5 min)
    } catch {
      return res.writeHead(401).end();
    }
    if (!seen.has(req.headers['webhook-id'])) {
      seen.add(req.headers['webhook-id']);
      console.log(event.type, event.data.id, event.data.result?.merchant?.name);
    }
    res.writeHead(204).end(); // answer quickly; do slow work afterwards
  })
  .listen(Number(process.env.PORT ?? 8080), () => console.log('listening'));
