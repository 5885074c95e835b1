/*
 * posgw loyalty app for the Poster POS platform (runs inside the Poster terminal).
 *
 * What it does, in the order of Poster's loyalty guideline:
 *  - install(): registers the app's button in the order screen's "•••" menu
 *    (Poster.interface.showApplicationIconAt, place "order") before anything else, subscribes to
 *    the events, drains the commit queue left by an earlier run and retries it on a timer;
 *  - applicationIconClicked: opens the guest popup. A guest already attached to the order (by
 *    this app or in Poster) is shown at once; otherwise the cashier types a phone or card, or
 *    scans a QR code / card (Poster.interface.scanBarcode). The guest is looked up with
 *    Poster.clients.find (an exact phone or card match only), created with Poster.clients.create
 *    in the configured client group when not found, attached with Poster.orders.setOrderClient,
 *    then the gateway answers the balance, the points the order would earn and the most it may
 *    spend; the cashier picks the redemption (all, some points, none);
 *  - orderClientChange: a guest the cashier replaced or removed in Poster is forgotten here too;
 *  - beforeOrderClose: asks the gateway for the bonus of the identified guest and the chosen
 *    redemption, then Poster.orders.setOrderBonus / setPrintText / setExtras. next() is called on
 *    EVERY path, also when Poster or the gateway never answers (a forgotten next() freezes payment);
 *    an answer that comes after the payment went on is not applied;
 *  - afterOrderClose, returnFiscal: queued in storage first, then sent; a message leaves the queue
 *    only on a 2xx, so a lost network or a terminal restart never loses a sale. A message the
 *    gateway refuses as malformed (400, 413) moves to a bounded list of refused ones instead of
 *    blocking every later sale.
 * makeRequest answers are read from `code`, or `status` when a terminal sets only that (Poster's
 * documents show both). Every request has a timeout (makeRequest has none by default).
 */
'use strict';

var QUEUE_KEY = 'posgw.queue';
var REFUSED_KEY = 'posgw.refused';
var GUESTS_KEY = 'posgw.guests';
var MAX_GUESTS = 50; // identified guests remembered per terminal (oldest forgotten first)
var MAX_REFUSED = 50;

function digits(text) { return String(text == null ? '' : text).replace(/\D+/g, ''); }

/* What the cashier typed is taken for a phone when it is digits in phone punctuation with the
 * country code: "+" and 10 to 15 digits, or 11 to 15 digits. Anything else (a 10-digit card, a QR
 * payload) is a card number; what the scanner read is always a card. */
function looksLikePhone(text) {
  var t = String(text).trim();
  var n = digits(t).length;
  if (!/^\+?[\d\s()\-]+$/.test(t)) { return false; }
  return t.charAt(0) === '+' ? n >= 10 && n <= 15 : n >= 11 && n <= 15;
}

function cardOf(client) {
  var card = String(client && client.cardNumber != null ? client.cardNumber : '').trim();
  return card && card !== '0' ? card : '';
}

function phoneOf(client) {
  var phone = String(client && client.phone != null ? client.phone : '').trim();
  return digits(phone).length >= 10 ? phone : '';
}

function nameOf(client) {
  return [client.firstname, client.lastname].filter(function (s) { return s && s !== '0'; }).join(' ') ||
    String(client.client_name || '');
}

/* What identifies the found client to the loyalty core: {card: query} when its card equals the
 * query, {phone: its phone} when its phone does (the last 10 digits, so "8 916…" finds
 * "+7 916…"), with the client; null when only a name or part of a number matched. */
function exactClient(found, query) {
  var q = String(query).trim();
  var qd = digits(q);
  var lists = [].concat(found && found.foundByCard || [], found && found.foundClients || []);
  for (var i = 0; i < lists.length; i++) {
    var c = lists[i];
    if (!c || Number(c.hidden) === 1) { continue; }
    if (cardOf(c) && cardOf(c) === q) { return { client: c, ident: { card: q } }; }
    var pd = digits(c.phone);
    if (qd.length >= 10 && pd.length >= 10 && pd.slice(-10) === qd.slice(-10)) {
      return { client: c, ident: { phone: phoneOf(c) } };
    }
  }
  return null;
}

function unwrapClient(answer) {
  if (answer && typeof answer === 'object' && answer.client && typeof answer.client === 'object') {
    return answer.client;  // clients.create documents {client}
  }
  return answer && typeof answer === 'object' && answer.id != null ? answer : null;
}

function statusOf(answer) {
  if (!answer) { return 0; }
  var raw = answer.code !== undefined && answer.code !== null && answer.code !== '' ? answer.code : answer.status;
  var n = Number(raw);
  return isFinite(n) ? n : 0;
}

function bodyOf(answer) {
  var result = answer ? answer.result : null;
  if (typeof result === 'string') {
    try { return JSON.parse(result); } catch (e) { return null; }
  }
  return result && typeof result === 'object' ? result : null;
}

/* ------------------------------------------------------------------ the popup's content */

/* The popup shows the app's own document; this view draws into `root` with plain DOM calls.
 * Elements the cashier uses carry data-posgw="<role>". */
function createView(doc, root, act) {
  function el(tag, role, text) {
    var node = doc.createElement(tag);
    if (role) { node.setAttribute('data-posgw', role); }
    if (text != null) { node.textContent = String(text); }
    return node;
  }
  function clear() { while (root.firstChild) { root.removeChild(root.firstChild); } }
  function line(text) { root.appendChild(el('p', null, text)); }
  function input(role, placeholder, value) {
    var node = el('input', role);
    node.type = 'text';
    node.placeholder = placeholder;
    node.value = value || '';
    root.appendChild(node);
    return node;
  }
  function button(role, text, onClick) {
    var node = el('button', role, text);
    node.type = 'button';
    node.addEventListener('click', onClick);
    root.appendChild(node);
    return node;
  }

  return {
    message: function (text) { clear(); line(text); },
    identify: function (note, canScan) {
      clear();
      if (note) { line(note); }
      var query = input('query', 'Телефон или номер карты');
      button('find', 'Найти', function () { act.find(query.value); });
      if (canScan) { button('scan', 'Сканировать QR или карту', function () { act.scan(); }); }
    },
    create: function (query, note, scanned) {
      clear();
      line(note || 'Гость не найден. Создать нового?');
      var isPhone = !scanned && looksLikePhone(query);
      var name = input('name', 'Имя и фамилия');
      var phone = input('phone', 'Телефон', isPhone ? query : '');
      var card = input('card', 'Номер карты', isPhone ? '' : query);
      button('create', 'Создать гостя', function () {
        act.create({ name: name.value, phone: phone.value, card: card.value });
      });
      button('back', 'Назад', function () { act.other(); });
    },
    guest: function (g) {
      clear();
      line(g.name || 'Гость');
      if (g.note) { line(g.note); }
      if (!g.found) {
        line('Не найден в программе лояльности: бонусы не начисляются.');
        button('other', 'Другой гость', function () { act.other(); });
        return;
      }
      line('Баланс: ' + (g.balance == null || g.offline ? 'обновится позже' : g.balance + ' б.'));
      if (g.earn != null) { line('За этот заказ будет начислено: ' + g.earn + ' б.'); }
      if (g.spend != null) { line('Можно списать: ' + g.spend + ' б.'); }
      if (g.redeem) { line('Выбрано к списанию: ' + (g.redeem === 'max' ? 'максимум' : g.redeem + ' б.')); }
      if (g.spend == null || g.spend > 0) {
        button('redeem-max', 'Списать максимум', function () { act.redeem('max'); });
        var points = input('points', 'Сколько баллов списать');
        button('redeem', 'Списать', function () { act.redeem(points.value); });
      }
      button('no-redeem', 'Без списания', function () { act.redeem(0); });
      button('other', 'Другой гость', function () { act.other(); });
    },
  };
}

/* ------------------------------------------------------------------ the app */

function createApp(opts) {
  var Poster = opts.Poster;
  var storage = opts.storage;
  var url = String(opts.gatewayUrl || '').replace(/\/+$/, '') + '/v1/poster/pos-event';
  var timeout = opts.timeoutMs || 2000;
  var localRequest = opts.localRequest !== false;  // false: through Poster's proxy (signed)
  var groupId = Number(opts.clientGroupId) || 0;
  var title = opts.title || 'Бонусы';
  var later = opts.later || function (fn, ms) { return setTimeout(fn, ms); };
  var every = opts.every || function (fn, ms) { return setInterval(fn, ms); };
  var sending = false;
  var current = null;  // the order the popup is about
  var view = null;

  function settings() {
    var s = Poster.settings || {};
    return { accountUrl: s.accountUrl, spotId: s.spotId, spotTabletId: s.spotTabletId,
             applicationId: s.applicationId };
  }

  function send(message, done) {
    var headers = ['Content-Type: application/json'];
    if (opts.token) { headers.push('X-Gateway-Token: ' + opts.token); }
    try {
      Poster.makeRequest(url, {
        headers: headers, method: 'post', data: message, timeout: timeout, localRequest: localRequest,
      }, function (answer) {
        var code = statusOf(answer);
        done(code, code >= 200 && code < 300 ? bodyOf(answer) : null);
      });
    } catch (e) {
      done(0, null);
    }
  }

  function ask(message) {
    return new Promise(function (resolve) { send(message, function (code, body) { resolve(body); }); });
  }

  /* ---------------------------------------------------------------- storage */

  function read(key, fallback) {
    try {
      var value = JSON.parse(storage.getItem(key) || 'null');
      return value == null ? fallback : value;
    } catch (e) { return fallback; }
  }

  function write(key, value) { storage.setItem(key, JSON.stringify(value)); }

  function guests() {
    var g = read(GUESTS_KEY, []);
    return Array.isArray(g) ? g : [];
  }

  function guestOf(orderId) {
    var all = guests();
    for (var i = 0; i < all.length; i++) { if (String(all[i].orderId) === String(orderId)) { return all[i]; } }
    return null;
  }

  function remember(orderId, guest) {
    var all = guests().filter(function (g) { return String(g.orderId) !== String(orderId); });
    if (guest) { guest.orderId = orderId; all.push(guest); }
    write(GUESTS_KEY, all.slice(-MAX_GUESTS));
  }

  function loyaltyOf(guest) {
    if (!guest) { return {}; }
    var lo = guest.card ? { card: guest.card } : guest.phone ? { phone: guest.phone } : {};
    if (guest.redeem) { lo.redeem = guest.redeem; }
    return lo;
  }

  /* ---------------------------------------------------------------- commit queue */

  function flush(done) {
    done = done || function () {};
    if (sending) { done(); return; }
    var queue = read(QUEUE_KEY, []);
    if (!queue.length) { done(); return; }
    sending = true;
    send(queue[0], function (code) {
      sending = false;
      var malformed = code === 400 || code === 413;
      if (code >= 200 && code < 300 || malformed) {
        var rest = read(QUEUE_KEY, []);
        var first = rest.shift();
        if (malformed) { write(REFUSED_KEY, read(REFUSED_KEY, []).concat([first]).slice(-MAX_REFUSED)); }
        write(QUEUE_KEY, rest);
        flush(done);
      } else {
        done();  // kept: retried on the next event or by the timer
      }
    });
  }

  function commit(event, data) {
    data = data || {};
    var order = data.order;
    var guest = order ? guestOf(order.id) : null;
    var queue = read(QUEUE_KEY, []);
    queue.push({ event: event, settings: settings(), loyalty: loyaltyOf(guest), data: data });
    write(QUEUE_KEY, queue);
    if (event === 'afterOrderClose' && order) { remember(order.id, null); }
    flush();
  }

  /* ---------------------------------------------------------------- calc before payment */

  /* The guest of the order: the one identified here, else the Poster client attached to it
   * (remembered, without redemption); null when nobody is attached. */
  function guestFor(order) {
    var known = guestOf(order.id);
    if (known) { return Promise.resolve(known); }
    if (!Number(order.clientId) || !Poster.clients || !Poster.clients.get) { return Promise.resolve(null); }
    return Promise.resolve(Poster.clients.get(Number(order.clientId))).then(function (answer) {
      var client = unwrapClient(answer);
      if (!client || !(cardOf(client) || phoneOf(client))) { return null; }
      var guest = { clientId: client.id, name: nameOf(client), card: cardOf(client), phone: phoneOf(client),
                    redeem: 0 };
      remember(order.id, guest);
      return guest;
    });
  }

  function applyBonus(order, body) {
    if (!body || typeof body.bonus !== 'number') { return; }
    var bonus = Math.round(body.bonus * 100) / 100;
    if (!(bonus >= 0 && bonus <= Number(order.total))) { return; }
    Poster.orders.setOrderBonus(order.id, bonus);  // 0 clears a stale amount
    if (body.printText) { Poster.orders.setPrintText(order.id, String(body.printText)); }
    var extras = body.extras || {};
    Object.keys(extras).forEach(function (k) { Poster.orders.setExtras(order.id, k, String(extras[k])); });
  }

  function beforeOrderClose(data, next) {
    var order = data && data.order ? data.order : data;
    var finished = false;
    function finish() { if (!finished) { finished = true; next(); } }
    later(finish, timeout + 1000);  // whatever hangs, the payment goes on
    try {
      guestFor(order).then(function (guest) {
        send({ event: 'beforeOrderClose', settings: settings(), loyalty: loyaltyOf(guest), data: { order: order } },
          function (code, body) {
            try {
              if (!finished) { applyBonus(order, body); }  // not after the payment went on without it
            } finally { finish(); }
          });
      }).catch(finish);
    } catch (e) {
      finish();
    }
  }

  /* The cashier attached another guest in Poster, or removed the guest: forget ours. */
  function clientChanged(data) {
    var guest = data ? guestOf(data.orderId) : null;
    if (guest && Number(guest.clientId) !== Number(data.clientId)) { remember(data.orderId, null); }
  }

  /* ---------------------------------------------------------------- the guest popup */

  function canScan() {
    var env = Poster.environment || {};
    return !!(Poster.interface && Poster.interface.scanBarcode && (env.android || env.iOS));
  }

  function show(guest, note) {
    var order = current;
    view.message('Загрузка…');
    return ask({ event: 'applicationIconClicked', settings: settings(), loyalty: loyaltyOf(guest),
                 data: { place: 'order', order: order } })
      .then(function (body) {
        if (order !== current) { return; }
        if (!body) {
          view.guest({ found: true, name: guest.name, balance: null, offline: true, redeem: guest.redeem,
                       note: 'Сервер бонусов недоступен: баланс обновится позже.' });
          return;
        }
        view.guest({ found: !!body.found, name: body.name || guest.name, balance: body.balance,
                     offline: !!body.offline, earn: body.earn, spend: body.spend, redeem: guest.redeem,
                     note: note });
      });
  }

  /* Attach `client` to the popup's order and remember it as the order's guest, known to the
   * loyalty core by `ident` ({card} or {phone}); then show the balance. */
  function attach(client, ident) {
    var order = current;
    var guest = { clientId: client.id, name: nameOf(client), card: ident.card || '', phone: ident.phone || '',
                  redeem: 0 };
    return Promise.resolve(Poster.orders.setOrderClient(order.id, Number(client.id)))
      .then(function (answer) { return !(answer && answer.success === false); }, function () { return false; })
      .then(function (attached) {
        remember(order.id, guest);
        return show(guest, attached ? '' : 'Poster не привязал гостя к заказу: проверьте заказ.');
      });
  }

  /* Poster.clients.find with the text as typed, then (a number typed with other punctuation
   * than the stored phone's) with its last 10 digits; the exact match or null. */
  function lookup(query) {
    var tail = digits(query).slice(-10);
    return Promise.resolve(Poster.clients.find({ searchVal: query })).then(function (found) {
      var match = exactClient(found, query);
      if (match || tail.length < 10 || tail === query) { return match; }
      return Promise.resolve(Poster.clients.find({ searchVal: tail })).then(function (more) {
        return exactClient(more, query);
      });
    });
  }

  function failed(e) {
    view.identify('Не получилось: ' + (e && e.message ? e.message : String(e)), canScan());
  }

  var act = {
    find: function (text, scanned) {
      var query = String(text || '').trim();
      if (!query) { view.identify('Введите телефон или номер карты.', canScan()); return Promise.resolve(); }
      view.message('Поиск…');
      return lookup(query).then(function (match) {
        if (match) { return attach(match.client, match.ident); }
        view.create(query, '', scanned);
        return undefined;
      }).catch(failed);
    },
    scan: function () {
      return Promise.resolve(Poster.interface.scanBarcode()).then(function (answer) {
        var code = typeof answer === 'string' ? answer : answer && answer.barcode;
        if (!code) { view.identify('Сканирование отменено.', canScan()); return undefined; }
        return act.find(code, true);
      }).catch(failed);
    },
    create: function (entered) {
      var phone = String(entered.phone || '').trim();
      var card = String(entered.card || '').trim();
      if (!groupId) {
        view.create(card || phone, 'Создание гостей выключено: задайте clientGroupId в настройках приложения.');
        return Promise.resolve();
      }
      if (!phone && !card) { view.create('', 'Нужен телефон или номер карты.'); return Promise.resolve(); }
      var fields = { client_name: String(entered.name || '').trim() || phone || card,
                     client_groups_id_client: groupId };
      if (phone) { fields.phone = phone; }
      if (card) { fields.card_number = card; }
      return Promise.resolve(Poster.clients.create({ client: fields })).then(function (answer) {
        var client = unwrapClient(answer);
        if (!client) { throw new Error('Poster не создал гостя'); }
        return attach(client, card ? { card: card } : { phone: phone });
      }).catch(failed);
    },
    redeem: function (value) {
      var guest = current ? guestOf(current.id) : null;
      if (!guest) { return; }
      var points = value === 'max' ? 'max' : Math.max(0, Math.floor(Number(value) || 0));
      guest.redeem = points;
      remember(current.id, guest);
      if (Poster.interface.closePopup) { Poster.interface.closePopup(); }
    },
    other: function () {
      if (current) { remember(current.id, null); }
      view.identify('', canScan());
    },
  };

  function open(data) {
    var order = data && data.order;
    view = view || createView(opts.document, rootOf(opts.document), act);
    current = order || null;
    Poster.interface.popup({ width: 520, height: 460, title: title });
    if (!order) { view.message('Откройте заказ, чтобы выбрать гостя.'); return Promise.resolve(); }
    return guestFor(order).then(function (guest) {
      if (guest) { return show(guest); }
      view.identify('', canScan());
      return undefined;
    }).catch(failed);
  }

  return {
    install: function () {
      Poster.interface.showApplicationIconAt({ order: title });
      Poster.on('applicationIconClicked', open);
      Poster.on('beforeOrderClose', beforeOrderClose);
      Poster.on('afterOrderClose', function (data) { commit('afterOrderClose', data); });
      Poster.on('returnFiscal', function (data) { commit('returnFiscal', data); });
      Poster.on('orderClientChange', clientChanged);
      every(function () { flush(); }, opts.retryMs || 30000);
      flush();
    },
    open: open, act: act, beforeOrderClose: beforeOrderClose, commit: commit, flush: flush,
    queue: function () { return read(QUEUE_KEY, []); },
    refused: function () { return read(REFUSED_KEY, []); },
    guest: guestOf,
  };
}

function rootOf(doc) {
  var root = doc.getElementById('posgw');
  if (!root) {
    root = doc.createElement('div');
    root.setAttribute('id', 'posgw');
    doc.body.appendChild(root);
  }
  return root;
}

if (typeof module !== 'undefined' && module.exports) {
  module.exports = { createApp: createApp, looksLikePhone: looksLikePhone, QUEUE_KEY: QUEUE_KEY,
                     GUESTS_KEY: GUESTS_KEY };
}
/* global Poster, window, document */
if (typeof Poster !== 'undefined' && typeof window !== 'undefined' && window.POSGW_CONFIG) {
  createApp(Object.assign({ Poster: Poster, storage: window.localStorage, document: document },
    window.POSGW_CONFIG)).install();
}
