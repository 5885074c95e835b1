/*
 * A model of the terminal's global `Poster` object and of the app's document, for the app's Node
 * tests. Behaviour as Poster's public platform documentation (joinposter/docs, ru/pos/…) states it,
 * in our own code:
 *  - on(event, handler): handlers per event; emit() calls them as the terminal would;
 *  - interface: showApplicationIconAt(places) (place -> title), popup({width, height, title}),
 *    closePopup(), showNotification(), scanBarcode() -> Promise of {barcode} ("" when the window was
 *    closed; only on Android/iOS, see `environment`);
 *  - orders: getActive() -> Promise {order}; setOrderBonus(id, amount) sets payedBonus and
 *    loyaltyAppId; setPrintText, setExtras(id, key, value) (strings); setOrderClient(id, clientId) ->
 *    Promise {success} (false for an unknown client or order), sets clientId and raises
 *    orderClientChange {clientId, orderId};
 *  - clients: find({searchVal}) searches phone, first and last name and card (part of the text) ->
 *    Promise {foundClients, foundByCard}; create({client: {client_name, client_groups_id_client, …}})
 *    -> Promise {client} (both fields required, else rejected); get(id) -> Promise client or false;
 *  - makeRequest(url, options, callback): the callback gets {result, code}: result the raw body
 *    string, code the HTTP status, 0 on a timeout or no network, 1 when the body is not JSON (the
 *    English doc); with answerField 'status' the status comes as `status` instead (the Russian doc's
 *    sample reads answer.status).
 * The gateway behind makeRequest is a function (url, options) -> {status, body} | null (no answer),
 * or a promise of one (a real HTTP call: against-driver.js).
 */
'use strict';

function createPoster(gateway, opts) {
  opts = opts || {};
  var handlers = {};
  var clients = (opts.clients || []).map(function (c) { return Object.assign({}, c); });
  var orders = {};
  var nextClientId = 100;
  var model = {
    calls: [],
    requests: [],
    icons: null,
    popups: [],
    closedPopups: 0,
    scans: (opts.scans || []).slice(),
    answerField: opts.answerField || 'code',
    gateway: gateway,
    settings: { accountUrl: 'coffee-demo', spotId: 1, spotTabletId: 3, applicationId: '1234',
                currency: 'руб.', lang: 'ru' },
    environment: Object.assign({ android: true, iOS: false, windows: false, desktop: false }, opts.environment),
    clientList: clients,
    orderMap: orders,

    on: function (event, handler) { (handlers[event] = handlers[event] || []).push(handler); },
    emit: function (event, data, next) {
      (handlers[event] || []).forEach(function (h) { h(data, next); });
      return (handlers[event] || []).length;
    },
    listeners: function (event) { return (handlers[event] || []).length; },
    openOrder: function (order) { orders[String(order.id)] = order; return order; },

    interface: {
      showApplicationIconAt: function (places) {
        model.calls.push(['showApplicationIconAt', places]);
        model.icons = Object.assign({}, places);
      },
      popup: function (args) { model.calls.push(['popup', args]); model.popups.push(args); },
      closePopup: function () { model.calls.push(['closePopup']); model.closedPopups += 1; },
      showNotification: function (args) { model.calls.push(['showNotification', args]); return Promise.resolve({}); },
      scanBarcode: function () {
        model.calls.push(['scanBarcode']);
        if (!model.environment.android && !model.environment.iOS) {
          return Promise.reject(new Error('scanBarcode is available on Android and iOS only'));
        }
        var next = model.scans.length ? model.scans.shift() : '';
        return Promise.resolve(typeof next === 'string' ? { barcode: next } : next);
      },
    },

    orders: {
      getActive: function () {
        var ids = Object.keys(orders);
        return Promise.resolve(ids.length ? { order: orders[ids[ids.length - 1]] } : {});
      },
      setOrderBonus: function (id, amount) {
        model.calls.push(['setOrderBonus', id, amount]);
        var order = orders[String(id)];
        if (order) { order.payedBonus = amount; order.loyaltyAppId = Number(model.settings.applicationId); }
      },
      setPrintText: function (id, text) { model.calls.push(['setPrintText', id, text]); },
      setExtras: function (id, key, value) {
        model.calls.push(['setExtras', id, key, value]);
        var order = orders[String(id)];
        if (order) { order.extras = Object.assign({}, order.extras); order.extras[key] = String(value); }
      },
      setOrderClient: function (id, clientId) {
        model.calls.push(['setOrderClient', id, clientId]);
        var order = orders[String(id)];
        var client = clients.filter(function (c) { return Number(c.id) === Number(clientId); })[0];
        if (!order || !client) { return Promise.resolve({ success: false }); }
        order.clientId = Number(clientId);
        model.emit('orderClientChange', { clientId: Number(clientId), orderId: id });
        return Promise.resolve({ success: true });
      },
    },

    clients: {
      find: function (args) {
        model.calls.push(['clients.find', args.searchVal]);
        var q = String(args.searchVal || '').toLowerCase();
        var has = function (v) { return String(v || '').toLowerCase().indexOf(q) >= 0; };
        var live = clients.filter(function (c) { return !c.hidden; });
        return Promise.resolve({
          foundClients: live.filter(function (c) { return q && (has(c.phone) || has(c.firstname) || has(c.lastname)); }),
          foundByCard: live.filter(function (c) { return q && c.cardNumber !== '0' && has(c.cardNumber); }),
        });
      },
      create: function (args) {
        model.calls.push(['clients.create', args.client]);
        var w = args && args.client;
        if (!w || !w.client_name || !w.client_groups_id_client) {
          return Promise.reject(new Error('client_name and client_groups_id_client are required'));
        }
        var parts = String(w.client_name).split(' ');
        var client = { id: nextClientId++, firstname: parts[0], lastname: parts.slice(1).join(' '),
                       loyaltyType: 1, discount: 0, hidden: 0, groupId: Number(w.client_groups_id_client),
                       cardNumber: w.card_number || '0', bonus: 0, totalPayedSum: 0, phone: w.phone || '' };
        clients.push(client);
        return Promise.resolve({ client: client });
      },
      get: function (id) {
        var client = clients.filter(function (c) { return Number(c.id) === Number(id); })[0];
        return Promise.resolve(client || false);
      },
    },

    makeRequest: function (url, options, callback) {
      model.requests.push({ url: url, options: options });
      // answers arrive later, as over a network
      Promise.resolve(model.gateway(url, options)).then(function (answer) {
        var reply = {};
        if (!answer) {
          reply.result = false;
          reply[model.answerField] = 0;
        } else {
          var raw = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body);
          var json = true;
          try { JSON.parse(raw); } catch (e) { json = false; }
          reply.result = json ? raw : false;
          reply[model.answerField] = json ? answer.status : 1;
        }
        callback(reply);
      });
    },
  };
  return model;
}

/* ---------------------------------------------------------------- the app's document */

function createNode(tag) {
  var node = {
    tagName: String(tag).toUpperCase(), children: [], attributes: {}, listeners: {}, parentNode: null,
    value: '', type: '', placeholder: '', _text: '',
    get firstChild() { return node.children[0] || null; },
    get textContent() { return node._text + node.children.map(function (c) { return c.textContent; }).join(''); },
    set textContent(v) { node.children = []; node._text = String(v); },
    setAttribute: function (k, v) { node.attributes[k] = String(v); },
    getAttribute: function (k) { return k in node.attributes ? node.attributes[k] : null; },
    appendChild: function (child) { child.parentNode = node; node.children.push(child); return child; },
    removeChild: function (child) {
      var i = node.children.indexOf(child);
      if (i < 0) { throw new Error('not a child'); }
      node.children.splice(i, 1);
      child.parentNode = null;
      return child;
    },
    addEventListener: function (type, fn) { (node.listeners[type] = node.listeners[type] || []).push(fn); },
    click: function () {
      var results = (node.listeners.click || []).map(function (fn) { return fn({ target: node }); });
      return Promise.all(results);
    },
  };
  return node;
}

function createDocument() {
  var body = createNode('body');
  function walk(node, out) {
    out.push(node);
    node.children.forEach(function (c) { walk(c, out); });
    return out;
  }
  return {
    body: body,
    createElement: createNode,
    getElementById: function (id) {
      return walk(body, []).filter(function (n) { return n.getAttribute('id') === id; })[0] || null;
    },
    /* the element the cashier sees under data-posgw=role (null when not shown) */
    role: function (role) {
      return walk(body, []).filter(function (n) { return n.getAttribute('data-posgw') === role; })[0] || null;
    },
    text: function () { return body.textContent; },
  };
}

/* Lets every pending promise callback run (the model answers asynchronously, like a terminal). */
function settle() {
  return new Promise(function (resolve) { setImmediate(resolve); });
}

module.exports = { createPoster: createPoster, createDocument: createDocument, settle: settle };
