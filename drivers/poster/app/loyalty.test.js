'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { createApp } = require('./loyalty.js');

function memoryStorage() {
  const data = {};
  return { getItem: (k) => (k in data ? data[k] : null), setItem: (k, v) => { data[k] = String(v); } };
}

function fakePoster(answers) {
  const calls = [];
  const sent = [];
  return {
    calls, sent,
    settings: { accountUrl: 'coffee-demo', spotId: 1, spotTabletId: 3, applicationId: '1234' },
    orders: {
      setOrderBonus: (id, v) => calls.push(['setOrderBonus', id, v]),
      setPrintText: (id, t) => calls.push(['setPrintText', id, t]),
      setExtras: (id, k, v) => calls.push(['setExtras', id, k, v]),
    },
    on: () => {},
    makeRequest: (url, options, cb) => { sent.push({ url, options }); cb(answers.shift() || { code: 0, result: false }); },
  };
}

const order = { id: 1767254400123, total: 465.5 };
const app = (poster, storage) => createApp({
  Poster: poster, storage: storage || memoryStorage(), gatewayUrl: 'http://10.0.0.5:8080/', token: 'tok',
  loyaltyOf: () => ({ card: '2000012345', redeem: 120 }),
});

test('applies the bonus, text and extras, then calls next', () => {
  const poster = fakePoster([{ code: 200, result: '{"bonus":120.00,"printText":"Карта","extras":{"posgw":"c1.t.m"}}' }]);
  let nexts = 0;
  app(poster).beforeOrderClose({ order }, () => { nexts += 1; });
  assert.strictEqual(nexts, 1);
  assert.deepStrictEqual(poster.calls, [['setOrderBonus', order.id, 120], ['setPrintText', order.id, 'Карта'],
    ['setExtras', order.id, 'posgw', 'c1.t.m']]);
  const req = poster.sent[0];
  assert.strictEqual(req.url, 'http://10.0.0.5:8080/v1/poster/pos-event');
  assert.strictEqual(req.options.localRequest, true);
  assert.strictEqual(req.options.timeout, 2000);
  assert.ok(req.options.headers.includes('X-Gateway-Token: tok'));
  assert.strictEqual(req.options.data.event, 'beforeOrderClose');
});

test('timeout, error or a bonus above the total: no bonus, next still called', () => {
  for (const answer of [{ code: 0, result: false }, { code: 503, result: '{}' }, { code: 1, result: 'x' },
    { code: 200, result: '{"bonus":999}' }]) {
    const poster = fakePoster([answer]);
    let nexts = 0;
    app(poster).beforeOrderClose({ order }, () => { nexts += 1; });
    assert.strictEqual(nexts, 1);
    assert.deepStrictEqual(poster.calls, []);
  }
});

test('a bonus of 0 clears a stale amount', () => {
  const poster = fakePoster([{ code: 200, result: '{"bonus":0}' }]);
  app(poster).beforeOrderClose({ order }, () => {});
  assert.deepStrictEqual(poster.calls, [['setOrderBonus', order.id, 0]]);
});

test('closed orders are queued and leave the queue only on a 2xx', () => {
  const storage = memoryStorage();
  const poster = fakePoster([{ code: 0, result: false }]);
  const a = app(poster, storage);
  a.commit('afterOrderClose', { order });
  assert.strictEqual(a.queue().length, 1);
  poster.makeRequest = (url, options, cb) => { poster.sent.push({ url, options }); cb({ code: 200, result: '{}' }); };
  a.commit('returnFiscal', { order, products: [] });
  assert.strictEqual(a.queue().length, 0);
  assert.deepStrictEqual(poster.sent.map((s) => s.options.data.event),
    ['afterOrderClose', 'afterOrderClose', 'returnFiscal']);
});
