'use strict';
/*
 * The app against the model of the terminal's Poster object (poster-model.js) and a model of the
 * gateway's answers (its documented shapes: drivers/poster/README.md).
 */
const test = require('node:test');
const assert = require('node:assert');
const { createApp, looksLikePhone, QUEUE_KEY } = require('./loyalty.js');
const { createPoster, createDocument, settle } = require('./poster-model.js');

const ORDER_ID = 1767254400123;
const ANNA = { id: 7, firstname: 'Анна', lastname: 'Котова', phone: '+79160000101', cardNumber: '0', hidden: 0,
               groupId: 3, bonus: 0 };
const BORIS = { id: 8, firstname: 'Борис', lastname: '', phone: '', cardNumber: '2000012345', hidden: 0,
                groupId: 3, bonus: 0 };

function memoryStorage() {
  const data = {};
  return { data, getItem: (k) => (k in data ? data[k] : null), setItem: (k, v) => { data[k] = String(v); } };
}

function newOrder(extra) {
  return Object.assign({ id: ORDER_ID, orderName: '', dateStart: ORDER_ID, dateClose: 0, status: 1, clientId: 0,
    products: { 0: { id: 12, count: 2, price: 190, modification: 0 }, 1: { id: 40, count: 1, price: 85.5 } },
    subtotal: 465.5, total: 465.5, payedBonus: 0, loyaltyAppId: 0, extras: {} }, extra);
}

/* The gateway as drivers/poster documents its answers; `down` answers nothing (a timeout). */
function gatewayModel() {
  const gw = {
    down: false, sent: [], status: 200, balance: 480, bonus: 120, found: true, refuse: null,
    handle(url, options) {
      gw.sent.push(options.data);
      if (gw.down) { return null; }
      const m = options.data;
      if (gw.refuse && gw.refuse(m)) { return { status: 400, body: { status: 'error', error: { code: 'BAD_REQUEST' } } }; }
      if (m.event === 'applicationIconClicked') {
        return { status: 200, body: { found: gw.found, name: 'Анна К.', balance: gw.balance, offline: false,
                                      earn: 17, spend: 232 } };
      }
      if (m.event === 'beforeOrderClose') {
        const lo = m.loyalty || {};
        const bonus = (lo.card || lo.phone) && lo.redeem ? (lo.redeem === 'max' ? gw.bonus : Number(lo.redeem)) : 0;
        return { status: gw.status, body: { bonus, printText: bonus ? 'Списано ' + bonus : '' } };
      }
      return { status: gw.status, body: { accepted: true, duplicate: false } };
    },
  };
  return gw;
}

function setup(options) {
  options = options || {};
  const gw = options.gateway || gatewayModel();
  const poster = createPoster((url, o) => gw.handle(url, o), {
    clients: options.clients || [ANNA, BORIS], scans: options.scans, answerField: options.answerField,
    environment: options.environment,
  });
  const doc = createDocument();
  const timers = { every: [], later: [] };
  const storage = options.storage || memoryStorage();
  const app = createApp(Object.assign({
    Poster: poster, storage, document: doc, gatewayUrl: 'http://10.0.0.5:8080/', token: 'tok',
    clientGroupId: 3,
    every: (fn, ms) => timers.every.push({ fn, ms }), later: (fn, ms) => timers.later.push({ fn, ms }),
  }, options.app));
  const order = poster.openOrder(newOrder(options.order));
  return { gw, poster, doc, app, order, storage, timers };
}

async function clickIcon(s) {
  s.poster.emit('applicationIconClicked', { place: 'order', order: s.order });
  await settle();
}

async function type(s, role, value) {
  const field = s.doc.role(role);
  assert.ok(field, `the popup shows no ${role} field: ${s.doc.text()}`);
  field.value = value;
}

async function click(s, role) {
  const button = s.doc.role(role);
  assert.ok(button, `the popup shows no ${role} button: ${s.doc.text()}`);
  await button.click();
  await settle();
}

async function pay(s) {
  let nexts = 0;
  s.poster.emit('beforeOrderClose', { order: s.order }, () => { nexts += 1; });
  await settle();
  return nexts;
}

test('install registers the order-screen icon before anything else and listens to the events', () => {
  const s = setup();
  s.app.install();
  assert.deepStrictEqual(s.poster.calls[0], ['showApplicationIconAt', { order: 'Бонусы' }]);
  for (const event of ['applicationIconClicked', 'beforeOrderClose', 'afterOrderClose', 'returnFiscal',
    'orderClientChange']) {
    assert.strictEqual(s.poster.listeners(event), 1, event);
  }
  assert.deepStrictEqual(s.timers.every.map((t) => t.ms), [30000]);
});

test('the icon opens the popup; with no guest yet it asks for a phone or card and offers the scanner', async () => {
  const s = setup();
  s.app.install();
  await clickIcon(s);
  assert.deepStrictEqual(s.poster.popups, [{ width: 520, height: 460, title: 'Бонусы' }]);
  assert.ok(s.doc.role('query') && s.doc.role('find') && s.doc.role('scan'));
  const desktop = setup({ environment: { android: false, desktop: true } });
  desktop.app.install();
  await clickIcon(desktop);
  assert.ok(desktop.doc.role('query') && !desktop.doc.role('scan'));  // scanBarcode: Android and iOS only
});

test('identification by phone: found in Poster, attached to the order, balance and points shown', async () => {
  const s = setup();
  s.app.install();
  await clickIcon(s);
  await type(s, 'query', '8 (916) 000-01-01');
  await click(s, 'find');
  assert.deepStrictEqual(s.poster.calls.filter((c) => c[0] === 'setOrderClient'), [['setOrderClient', ORDER_ID, 7]]);
  assert.strictEqual(s.order.clientId, 7);  // the guest is on the order in Poster
  const asked = s.gw.sent[s.gw.sent.length - 1];
  assert.strictEqual(asked.event, 'applicationIconClicked');
  assert.deepStrictEqual(asked.loyalty, { phone: '+79160000101' });
  assert.strictEqual(asked.data.order.id, ORDER_ID);
  const shown = s.doc.text();
  for (const part of ['Анна К.', 'Баланс: 480 б.', 'будет начислено: 17 б.', 'Можно списать: 232 б.']) {
    assert.ok(shown.includes(part), `${part} not in ${shown}`);
  }
});

test('a name or part of a number is no identification: the cashier is offered to create the guest', async () => {
  const s = setup();
  s.app.install();
  await clickIcon(s);
  await type(s, 'query', 'Анна');
  await click(s, 'find');
  assert.ok(s.doc.role('create') && s.doc.role('name'));
  assert.deepStrictEqual(s.poster.calls.filter((c) => c[0] === 'setOrderClient'), []);
});

test('identification by scan: the card read by scanBarcode, either answer shape', async () => {
  for (const scanned of ['2000012345', { barcode: '2000012345' }]) {
    const s = setup({ scans: [typeof scanned === 'string' ? { barcode: scanned } : scanned] });
    s.app.install();
    await clickIcon(s);
    await click(s, 'scan');
    assert.strictEqual(s.order.clientId, 8);
    assert.deepStrictEqual(s.gw.sent[s.gw.sent.length - 1].loyalty, { card: '2000012345' });
    assert.ok(s.doc.text().includes('Баланс: 480 б.'));
  }
  const plain = setup();
  plain.poster.interface.scanBarcode = () => Promise.resolve('2000012345');  // the boilerplate's typing
  plain.app.install();
  await clickIcon(plain);
  await click(plain, 'scan');
  assert.strictEqual(plain.order.clientId, 8);
  const unknown = setup({ scans: ['4607001234567'] });  // an EAN-13 card nobody has yet
  unknown.app.install();
  await clickIcon(unknown);
  await click(unknown, 'scan');
  assert.deepStrictEqual([unknown.doc.role('card').value, unknown.doc.role('phone').value], ['4607001234567', '']);
  const cancelled = setup({ scans: [''] });
  cancelled.app.install();
  await clickIcon(cancelled);
  await click(cancelled, 'scan');
  assert.ok(cancelled.doc.text().includes('Сканирование отменено') && cancelled.doc.role('query'));
  assert.strictEqual(cancelled.order.clientId, 0);
});

test('a new guest is created in the configured client group, attached and shown', async () => {
  const s = setup();
  s.app.install();
  await clickIcon(s);
  await type(s, 'query', '+7 916 000-09-99');
  await click(s, 'find');
  assert.strictEqual(s.doc.role('phone').value, '+7 916 000-09-99');
  await type(s, 'name', 'Вера Новикова');
  await click(s, 'create');
  const created = s.poster.calls.filter((c) => c[0] === 'clients.create');
  assert.deepStrictEqual(created, [['clients.create',
    { client_name: 'Вера Новикова', client_groups_id_client: 3, phone: '+7 916 000-09-99' }]]);
  const newcomer = s.poster.clientList[s.poster.clientList.length - 1];
  assert.strictEqual(s.order.clientId, newcomer.id);
  assert.deepStrictEqual(s.gw.sent[s.gw.sent.length - 1].loyalty, { phone: '+7 916 000-09-99' });
  assert.ok(s.doc.text().includes('Баланс: 480 б.'), s.doc.text());
});

test('without a client group the app does not create guests and says which setting is missing', async () => {
  const s = setup({ app: { clientGroupId: undefined } });
  s.app.install();
  await clickIcon(s);
  await type(s, 'query', '2000099999');
  await click(s, 'find');
  assert.strictEqual(s.doc.role('card').value, '2000099999');
  await click(s, 'create');
  assert.ok(s.doc.text().includes('clientGroupId'));
  assert.deepStrictEqual(s.poster.calls.filter((c) => c[0] === 'clients.create'), []);
});

test('a guest already on the order in Poster is shown at once; an unknown one can be replaced', async () => {
  const s = setup({ order: { clientId: 8 } });
  s.gw.found = false;
  s.app.install();
  await clickIcon(s);
  assert.deepStrictEqual(s.gw.sent[0].loyalty, { card: '2000012345' });
  assert.ok(s.doc.text().includes('Не найден в программе лояльности'));
  await click(s, 'other');
  assert.ok(s.doc.role('query'));
  assert.strictEqual(s.app.guest(ORDER_ID), null);
});

test('a guest replaced or removed in Poster is forgotten; the new one is used at payment', async () => {
  const s = setup();
  s.app.install();
  await clickIcon(s);
  await type(s, 'query', '2000012345');
  await click(s, 'find');
  await click(s, 'redeem-max');
  assert.strictEqual(s.app.guest(ORDER_ID).clientId, 8);
  s.poster.emit('orderClientChange', { clientId: 8, orderId: ORDER_ID });  // the same guest: kept
  assert.strictEqual(s.app.guest(ORDER_ID).redeem, 'max');
  s.order.clientId = 7;  // the cashier picked Анна in Poster's own client screen
  s.poster.emit('orderClientChange', { clientId: 7, orderId: ORDER_ID });
  assert.strictEqual(s.app.guest(ORDER_ID), null);
  await pay(s);
  assert.deepStrictEqual(s.gw.sent[s.gw.sent.length - 1].loyalty, { phone: '+79160000101' });  // no redemption
});

test('an answer that comes after the payment went on is not applied', async () => {
  const s = setup({ order: { clientId: 8 } });
  const held = [];
  s.poster.makeRequest = (url, options, cb) => held.push(cb);
  s.app.install();
  let nexts = 0;
  s.poster.emit('beforeOrderClose', { order: s.order }, () => { nexts += 1; });
  await settle();
  s.timers.later.forEach((t) => t.fn());  // the safety timer: the payment goes on
  held.forEach((cb) => cb({ code: 200, result: '{"bonus":50}' }));
  assert.strictEqual(nexts, 1);
  assert.deepStrictEqual(s.poster.calls.filter((c) => c[0] === 'setOrderBonus'), []);
});

test('the balance popup when the gateway is away or offline says the balance comes later', async () => {
  const s = setup({ order: { clientId: 7 } });
  s.gw.down = true;
  s.app.install();
  await clickIcon(s);
  assert.ok(s.doc.text().includes('обновится позже'), s.doc.text());
  assert.ok(s.doc.role('no-redeem'));
});

test('a redemption chosen in the popup is applied when the order is paid', async () => {
  const s = setup();
  s.app.install();
  await clickIcon(s);
  await type(s, 'query', '2000012345');
  await click(s, 'find');
  await click(s, 'redeem-max');
  assert.strictEqual(s.poster.closedPopups, 1);
  assert.strictEqual(await pay(s), 1);
  const calc = s.gw.sent[s.gw.sent.length - 1];
  assert.deepStrictEqual([calc.event, calc.loyalty], ['beforeOrderClose', { card: '2000012345', redeem: 'max' }]);
  assert.deepStrictEqual(s.poster.calls.filter((c) => c[0].startsWith('set') && c[0] !== 'setOrderClient'), [
    ['setOrderBonus', ORDER_ID, 120], ['setPrintText', ORDER_ID, 'Списано 120']]);
  assert.strictEqual(s.order.payedBonus, 120);
  await clickIcon(s);  // the cashier changes the mind: 50 points
  await type(s, 'points', '50');
  await click(s, 'redeem');
  await pay(s);
  assert.deepStrictEqual(s.gw.sent[s.gw.sent.length - 1].loyalty, { card: '2000012345', redeem: 50 });
  assert.strictEqual(s.order.payedBonus, 50);
});

test('makeRequest answers are read from code or from status', async () => {
  for (const answerField of ['code', 'status']) {
    const s = setup({ answerField, order: { clientId: 8 } });
    s.app.install();
    await clickIcon(s);
    await click(s, 'redeem-max');
    assert.strictEqual(await pay(s), 1);
    assert.strictEqual(s.order.payedBonus, 120, answerField);
    s.poster.emit('afterOrderClose', { order: s.order });
    await settle();
    assert.deepStrictEqual(s.app.queue(), [], answerField);
  }
});

test('next() is called on every path: no answer, an error, a bonus above the total, Poster failing', async () => {
  const silent = setup({ order: { clientId: 8 } });
  silent.poster.makeRequest = () => {};  // never calls back
  silent.app.install();
  let nexts = 0;
  silent.poster.emit('beforeOrderClose', { order: silent.order }, () => { nexts += 1; });
  await settle();
  assert.strictEqual(nexts, 0);
  silent.timers.later.forEach((t) => t.fn());
  silent.timers.later.forEach((t) => t.fn());
  assert.strictEqual(nexts, 1);
  assert.deepStrictEqual(silent.timers.later.map((t) => t.ms), [3000]);
  const failing = setup({ order: { clientId: 8 } });
  failing.poster.clients.get = () => Promise.reject(new Error('terminal database locked'));
  failing.app.install();
  assert.strictEqual(await pay(failing), 1);
  for (const [status, bonus] of [[503, 10], [200, 999]]) {
    const s = setup({ order: { clientId: 8 } });
    s.gw.status = status;
    s.gw.bonus = bonus;
    s.app.install();
    await clickIcon(s);
    await click(s, 'redeem-max');
    assert.strictEqual(await pay(s), 1);
    assert.strictEqual(s.order.payedBonus, 0);
  }
});

test('no guest: the calc still goes (bonus 0 clears a stale amount) with no loyalty', async () => {
  const s = setup();
  s.order.payedBonus = 30;
  s.app.install();
  assert.strictEqual(await pay(s), 1);
  assert.deepStrictEqual(s.gw.sent[0].loyalty, {});
  assert.deepStrictEqual(s.poster.calls.filter((c) => c[0] === 'setOrderBonus'), [['setOrderBonus', ORDER_ID, 0]]);
});

test('the commit queue survives a terminal restart and drains when the app starts again', async () => {
  const storage = memoryStorage();
  const first = setup({ storage });
  first.app.install();
  await clickIcon(first);
  await type(first, 'query', '2000012345');
  await click(first, 'find');
  first.gw.down = true;
  first.order.status = 2;
  first.poster.emit('afterOrderClose', { order: first.order });
  first.poster.emit('returnFiscal', { order: first.order, userId: 4, products: [{ product_id: 12, count: 1 }] });
  await settle();
  assert.deepStrictEqual(first.app.queue().map((m) => m.event), ['afterOrderClose', 'returnFiscal']);
  assert.deepStrictEqual(first.app.queue()[0].loyalty, { card: '2000012345' });
  first.timers.every[0].fn();  // the retry timer while the gateway is still away
  await settle();
  assert.strictEqual(JSON.parse(storage.getItem(QUEUE_KEY)).length, 2);

  const second = setup({ storage });  // the terminal restarted: a new app over the same storage
  second.app.install();
  await settle();
  assert.deepStrictEqual(second.app.queue(), []);
  assert.deepStrictEqual(second.gw.sent.map((m) => m.event), ['afterOrderClose', 'returnFiscal']);
  assert.strictEqual(second.app.guest(ORDER_ID), null);  // forgotten once the sale was queued
});

test('a commit the gateway refuses as malformed does not block the ones behind it', async () => {
  const s = setup();
  s.gw.refuse = (m) => m.event === 'returnFiscal';
  s.app.install();
  s.poster.emit('returnFiscal', { order: s.order, userId: 4, products: [] });
  s.poster.emit('afterOrderClose', { order: s.order });
  await settle();
  s.timers.every[0].fn();
  await settle();
  assert.deepStrictEqual(s.app.queue(), []);
  assert.deepStrictEqual(s.app.refused().map((m) => m.event), ['returnFiscal']);
});

test('requests: the gateway URL, a timeout, the token, localRequest as the setting says', async () => {
  const s = setup();
  s.app.install();
  await pay(s);
  const req = s.poster.requests[0];
  assert.strictEqual(req.url, 'http://10.0.0.5:8080/v1/poster/pos-event');
  assert.deepStrictEqual([req.options.method, req.options.timeout, req.options.localRequest], ['post', 2000, true]);
  assert.deepStrictEqual(req.options.headers, ['Content-Type: application/json', 'X-Gateway-Token: tok']);
  assert.deepStrictEqual(req.options.data.settings,
    { accountUrl: 'coffee-demo', spotId: 1, spotTabletId: 3, applicationId: '1234' });
  const proxied = setup({ app: { localRequest: false, token: '' } });
  proxied.app.install();
  await pay(proxied);
  const sent = proxied.poster.requests[0].options;
  assert.deepStrictEqual([sent.localRequest, sent.headers], [false, ['Content-Type: application/json']]);
});

test('what is taken for a phone and what for a card', () => {
  for (const phone of ['+79160000101', '+7 (916) 000-01-01', '8 916 000 01 01', '380682152264', '+3806821522']) {
    assert.strictEqual(looksLikePhone(phone), true, phone);
  }
  for (const card of ['2000012345', '9160000101', 'TOLO-12', 'https://x/q?c=1', '4607001234567890123',
    '+TOLO1234567890']) {
    assert.strictEqual(looksLikePhone(card), false, card);
  }
});
