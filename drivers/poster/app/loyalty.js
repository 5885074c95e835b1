/*
 * posgw loyalty app for the Poster POS platform (runs inside the Poster terminal).
 *
 * Forwards till events to the gateway over the local network and applies its answer:
 *  - beforeOrderClose: asks for the bonus, then Poster.orders.setOrderBonus / setPrintText /
 *    setExtras; next() is called on EVERY path (a forgotten next() freezes the payment);
 *  - afterOrderClose, returnFiscal: queued in localStorage first, then sent; a message leaves
 *    the queue only on a 2xx, so a lost network or a gateway restart never loses a sale;
 *  - applicationIconClicked: shows the customer's balance.
 * Every request has a timeout (Poster.makeRequest has none by default).
 */
'use strict';

var QUEUE_KEY = 'posgw.queue';

function createApp(opts) {
  var Poster = opts.Poster;
  var storage = opts.storage;
  var url = opts.gatewayUrl.replace(/\/+$/, '') + '/v1/poster/pos-event';
  var timeout = opts.timeoutMs || 2000;
  var loyaltyOf = opts.loyaltyOf || function () { return {}; };
  var sending = false;

  function settings() {
    var s = Poster.settings || {};
    return { accountUrl: s.accountUrl, spotId: s.spotId, spotTabletId: s.spotTabletId,
             applicationId: s.applicationId };
  }

  function send(message, done) {
    Poster.makeRequest(url, {
      headers: ['Content-Type: application/json', 'X-Gateway-Token: ' + opts.token],
      method: 'post', data: message, timeout: timeout, localRequest: true,
    }, function (answer) {
      var code = answer ? Number(answer.code) : 0;
      var body = null;
      if (code >= 200 && code < 300) {
        try { body = typeof answer.result === 'string' ? JSON.parse(answer.result) : answer.result; }
        catch (e) { body = null; }
      }
      done(code, body);
    });
  }

  function readQueue() {
    try { return JSON.parse(storage.getItem(QUEUE_KEY) || '[]'); } catch (e) { return []; }
  }

  function writeQueue(queue) { storage.setItem(QUEUE_KEY, JSON.stringify(queue)); }

  function flush(done) {
    done = done || function () {};
    if (sending) { done(); return; }
    var queue = readQueue();
    if (!queue.length) { done(); return; }
    sending = true;
    send(queue[0], function (code) {
      sending = false;
      if (code >= 200 && code < 300) {
        var rest = readQueue();
        rest.shift();
        writeQueue(rest);
        flush(done);
      } else {
        done();  // keep it; retried on the next event or timer
      }
    });
  }

  function commit(event, data) {
    var queue = readQueue();
    queue.push({ event: event, settings: settings(), loyalty: loyaltyOf(data.order), data: data });
    writeQueue(queue);
    flush();
  }

  function beforeOrderClose(data, next) {
    var order = data.order;
    var finished = false;
    function finish() { if (!finished) { finished = true; next(); } }
    try {
      send({ event: 'beforeOrderClose', settings: settings(), loyalty: loyaltyOf(order), data: { order: order } },
        function (code, body) {
          try {
            if (body && typeof body.bonus === 'number') {
              var bonus = Math.round(body.bonus * 100) / 100;
              if (bonus >= 0 && bonus <= Number(order.total)) {
                Poster.orders.setOrderBonus(order.id, bonus);  // 0 clears a stale amount
                if (body.printText) { Poster.orders.setPrintText(order.id, String(body.printText)); }
                var extras = body.extras || {};
                Object.keys(extras).forEach(function (k) {
                  Poster.orders.setExtras(order.id, k, String(extras[k]));
                });
              }
            }
          } finally {
            finish();
          }
        });
    } catch (e) {
      finish();
    }
  }

  function iconClicked(data) {
    send({ event: 'applicationIconClicked', settings: settings(), loyalty: loyaltyOf(data.order), data: data },
      function (code, body) {
        if (body && body.found && Poster.interface && Poster.interface.showNotification) {
          Poster.interface.showNotification({ title: 'Бонусы', message: 'Баланс: ' + body.balance });
        }
      });
  }

  return {
    install: function () {
      Poster.on('beforeOrderClose', beforeOrderClose);
      Poster.on('afterOrderClose', function (data) { commit('afterOrderClose', data); });
      Poster.on('returnFiscal', function (data) { commit('returnFiscal', data); });
      Poster.on('applicationIconClicked', iconClicked);
    },
    beforeOrderClose: beforeOrderClose, commit: commit, flush: flush, queue: readQueue,
  };
}

if (typeof module !== 'undefined' && module.exports) {
  module.exports = { createApp: createApp, QUEUE_KEY: QUEUE_KEY };
}
/* global Poster, window */
if (typeof Poster !== 'undefined' && typeof window !== 'undefined' && window.POSGW_CONFIG) {
  createApp(Object.assign({ Poster: Poster, storage: window.localStorage }, window.POSGW_CONFIG)).install();
}
