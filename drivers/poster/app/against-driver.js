'use strict';
/*
 * One cashier's order through the app against a real gateway (run by tests/drivers/poster/test_app.py,
 * which serves the Poster driver on 127.0.0.1): the model terminal (poster-model.js) whose makeRequest
 * is a real HTTP call. The cashier opens the popup, types the guest's card, picks "spend the
 * maximum" and takes the payment; the order closes. Prints what the terminal ended with as JSON.
 *
 *   node against-driver.js <gateway base URL> <pairing token>
 */
const { createApp } = require('./loyalty.js');
const { createPoster, createDocument } = require('./poster-model.js');

const [base, token] = process.argv.slice(2);
const ORDER_ID = 1767254400123;

async function http(url, options) {
  const headers = {};
  for (const line of options.headers) {
    const at = line.indexOf(':');
    headers[line.slice(0, at)] = line.slice(at + 1).trim();
  }
  try {
    const answer = await fetch(url, { method: options.method.toUpperCase(), headers,
      body: JSON.stringify(options.data), signal: AbortSignal.timeout(options.timeout) });
    return { status: answer.status, body: await answer.text() };
  } catch (e) {
    return null;  // a timeout or no network: code 0
  }
}

async function until(what, check) {
  for (let i = 0; i < 500; i++) {
    if (check()) { return; }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function main() {
  const poster = createPoster(http, { clients: [
    { id: 8, firstname: 'Борис', lastname: '', phone: '', cardNumber: '2000012345', hidden: 0, groupId: 3 }] });
  const doc = createDocument();
  const app = createApp({ Poster: poster, storage: memoryStorage(), document: doc, gatewayUrl: base, token,
    clientGroupId: 3, every: () => {}, later: () => {} });
  const order = poster.openOrder({ id: ORDER_ID, orderName: '', dateStart: ORDER_ID, dateClose: 0, status: 1,
    clientId: 0, userId: 4, products: { 0: { id: 12, count: 2, price: 190, modification: 0 },
      1: { id: 40, count: 1, price: 85.5, modification: 0 } },
    subtotal: 465.5, total: 465.5, payedBonus: 0, loyaltyAppId: 0, extras: {} });
  app.install();
  poster.emit('applicationIconClicked', { place: 'order', order });
  await until('the identify form', () => doc.role('query'));
  doc.role('query').value = '2000012345';
  await doc.role('find').click();
  await until('the balance', () => doc.role('redeem-max'));
  const popup = doc.text();
  await doc.role('redeem-max').click();
  let nexts = 0;
  poster.emit('beforeOrderClose', { order }, () => { nexts += 1; });
  await until('next()', () => nexts === 1);
  Object.assign(order, { status: 2, dateClose: ORDER_ID + 60000 });
  poster.emit('afterOrderClose', { order });
  await until('the sale acknowledged', () => app.queue().length === 0);
  process.stdout.write(JSON.stringify({
    popup, nexts, clientId: order.clientId, payedBonus: order.payedBonus, extras: order.extras,
    printed: poster.calls.filter((c) => c[0] === 'setPrintText').map((c) => c[2]),
    events: poster.requests.map((r) => r.options.data.event), queue: app.queue().length,
    refused: app.refused().length,
  }));
}

function memoryStorage() {
  const data = {};
  return { getItem: (k) => (k in data ? data[k] : null), setItem: (k, v) => { data[k] = String(v); } };
}

main().catch((e) => { process.stderr.write(String(e && e.stack || e)); process.exit(1); });
