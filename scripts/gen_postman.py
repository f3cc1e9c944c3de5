#!/usr/bin/env python3
"""Generates postman/ticketing.postman_collection.json: edit the cases here, then run `python3 scripts/gen_postman.py`.

Postman scripts cannot share functions, so helpers are written once here and inlined into each
script that uses them; the JSON it writes is what QA imports into Postman and what Newman runs.
"""

import json
import re
import subprocess
import sys
import uuid

OUT = sys.argv[1] if len(sys.argv) > 1 else str(__import__("pathlib").Path(__file__).resolve().parent.parent / "postman" / "ticketing.postman_collection.json")

# --------------------------------------------------------------------------------------------
# JavaScript helpers. Postman scripts cannot share functions, so the generator inlines the
# pieces a script uses (detected by name) at its top.
# --------------------------------------------------------------------------------------------
LIB_CORE = r"""
const baseUrl = pm.variables.get('baseUrl');
const tenant = pm.variables.get('tenant');
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const CATALOGUE = {
    101: { name: '3-in-1 Transport Pass', price: 9900, entitlements: ['bus', 'ferry', 'metro'] },
    102: { name: 'Airport Express Single', price: 2500, entitlements: ['airport'] }
};
function v(name) { return pm.collectionVariables.get(name); }
function num(name) { return Number(pm.collectionVariables.get(name)); }
function saveJson(name, value) { pm.collectionVariables.set(name, JSON.stringify(value)); }
function loadJson(name) { return JSON.parse(pm.collectionVariables.get(name)); }
function newTxnId(tag) { return pm.variables.replaceIn('MOCK-{{$timestamp}}-{{$randomInt}}{{$randomInt}}-' + tag); }
function codesOf(tickets) { return tickets.map(function (t) { return t.ticket_code; }).sort(); }
"""

LIB_HTTP = r"""
function call(method, path, token, body, cb) {
    const header = [{ key: 'X-Tenant-ID', value: tenant }];
    if (token) { header.push({ key: 'Authorization', value: 'Bearer ' + token }); }
    const req = { url: baseUrl + path, method: method, header: header };
    if (body !== undefined) {
        header.push({ key: 'Content-Type', value: 'application/json' });
        req.body = { mode: 'raw', raw: JSON.stringify(body) };
    }
    pm.sendRequest(req, function (err, res) {
        let json = null;
        if (!err) { try { json = res.json(); } catch (e) { json = null; } }
        cb(err, res, json);
    });
}
function productCounters(productId, cb) {
    call('GET', '/admin/tenants/' + tenant + '/products/' + productId, pm.variables.get('adminToken'), undefined,
        function (err, res, json) {
            pm.test('[operator] GET product ' + productId + ' answers 200 with integer stock and reserved', function () {
                pm.expect(err, 'transport error').to.equal(null);
                pm.expect(res.code, 'status').to.equal(200);
                pm.expect(Number.isInteger(json.stock), 'stock is an integer').to.equal(true);
                pm.expect(Number.isInteger(json.reserved), 'reserved is an integer').to.equal(true);
            });
            cb(json ? { stock: json.stock, reserved: json.reserved } : {});
        });
}
function snapshot(name, productIds) {
    const counters = {};
    productIds.forEach(function (id) {
        productCounters(id, function (c) {
            counters[id] = c;
            if (Object.keys(counters).length === productIds.length) { saveJson(name, counters); }
        });
    });
}
function expectCounters(label, name, deltas) {
    // deltas: {productId: [stockDelta, reservedDelta]} relative to the snapshot saved as `name`.
    const before = loadJson(name);
    Object.keys(deltas).forEach(function (id) {
        productCounters(id, function (after) {
            const d = deltas[id];
            pm.test(label + ' (product ' + id + ': stock ' + (d[0] ? d[0] : '±0') + ', reserved ' + (d[1] ? d[1] : '±0') + ')', function () {
                pm.expect(after.stock, 'stock').to.equal(before[id].stock + d[0]);
                pm.expect(after.reserved, 'reserved').to.equal(before[id].reserved + d[1]);
            });
        });
    });
}
function getOrder(orderId, cb) {
    call('GET', '/orders/' + orderId, pm.variables.get('userToken'), undefined, function (err, res, json) {
        pm.test('GET /orders/' + orderId + ' answers 200', function () {
            pm.expect(err, 'transport error').to.equal(null);
            pm.expect(res.code).to.equal(200);
        });
        cb(json || {});
    });
}
function myTicketsOf(orderId, cb) {
    call('GET', '/my/tickets', pm.variables.get('userToken'), undefined, function (err, res, json) {
        pm.test('GET /my/tickets answers 200', function () {
            pm.expect(err, 'transport error').to.equal(null);
            pm.expect(res.code).to.equal(200);
        });
        const all = (json && json.tickets) || [];
        cb(all.filter(function (t) { return t.order_id === orderId; }));
    });
}
"""

LIB_ORDER = r"""
function checkNewOrder(o, lines) {
    // lines: [[product_id, quantity], ...] as sent; prices come from the demo catalogue.
    const total = lines.reduce(function (sum, l) { return sum + CATALOGUE[l[0]].price * l[1]; }, 0);
    pm.test('返回 order_id (正整数)', function () {
        pm.expect(Number.isInteger(o.order_id) && o.order_id > 0, 'order_id = ' + o.order_id).to.equal(true);
    });
    pm.test('status = PENDING, payment_status = 0 (未支付)', function () {
        pm.expect(o.status).to.equal('PENDING');
        pm.expect(o.payment_status).to.equal(0);
    });
    pm.test('包含 out_trade_no', function () {
        pm.expect(o.out_trade_no).to.be.a('string').and.not.empty;
    });
    pm.test('items 包含所有商品 (名称、数量、单价、小计)', function () {
        pm.expect(o.items).to.be.an('array').with.lengthOf(lines.length);
        lines.forEach(function (l) {
            const p = CATALOGUE[l[0]];
            const item = o.items.find(function (i) { return i.product_id === l[0]; });
            pm.expect(item, 'line for product ' + l[0]).to.be.an('object');
            pm.expect(item.product_name, 'product_name').to.equal(p.name);
            pm.expect(item.quantity, 'quantity').to.equal(l[1]);
            pm.expect(item.unit_price, 'unit_price').to.equal(p.price);
            pm.expect(item.amount, 'amount = unit_price × quantity').to.equal(p.price * l[1]);
        });
    });
    pm.test('金额计算正确: total_amount = Σ unit_price × quantity = ' + total, function () {
        pm.expect(o.total_amount).to.equal(total);
        pm.expect(o.items.reduce(function (s, i) { return s + i.amount; }, 0), 'Σ amount').to.equal(total);
    });
    pm.test('currency = CNY', function () { pm.expect(o.currency).to.equal('CNY'); });
    pm.test('created_at / expires_at 为带时区的 RFC 3339 时间, expires_at 晚于 created_at', function () {
        pm.expect(o.created_at).to.match(RFC3339);
        pm.expect(o.expires_at).to.match(RFC3339);
        pm.expect(Date.parse(o.expires_at)).to.be.above(Date.parse(o.created_at));
    });
    return total;
}
"""

LIB_TICKET = r"""
function checkTicket(t, orderId) {
    const p = CATALOGUE[t.product_id];
    pm.test('票券 ' + t.ticket_code + ': status = ACTIVE, order_id = ' + orderId + ', 权益信息正确', function () {
        pm.expect(t.ticket_code, 'ticket_code').to.match(/^TKT-/);
        pm.expect(t.status, 'status').to.equal('ACTIVE');
        pm.expect(t.order_id, 'order_id').to.equal(orderId);
        pm.expect(p, 'product ' + t.product_id + ' is a demo product').to.be.an('object');
        pm.expect(t.product_name, 'product_name').to.equal(p.name);
        pm.expect(t.entitlements, 'entitlements').to.be.an('array');
        pm.expect(t.entitlements.map(function (e) { return e.code; }).sort(), 'entitlement codes').to.eql(p.entitlements);
        t.entitlements.forEach(function (e) {
            pm.expect(e.name, e.code + '.name').to.be.a('string').and.not.empty;
            pm.expect(e.uses_total, e.code + '.uses_total').to.equal(1);
            pm.expect(e.uses_left, e.code + '.uses_left').to.equal(1);
        });
        pm.expect(t.issued_at, 'issued_at').to.match(RFC3339);
        pm.expect(t.redemptions, 'redemptions').to.be.an('array').that.is.empty;
    });
}
"""

LIB_NOTIFY = r"""
function checkProcessed(a, orderId, lines) {
    // lines: [[product_id, quantity], ...] of the order; one ticket per unit bought.
    const expected = [];
    lines.forEach(function (l) { for (let i = 0; i < l[1]; i++) { expected.push(l[0]); } });
    pm.test('返回 status = processed', function () { pm.expect(a.status).to.equal('processed'); });
    pm.test('order_id = ' + orderId + ', order_status = PAID', function () {
        pm.expect(a.order_id).to.equal(orderId);
        pm.expect(a.order_status).to.equal('PAID');
    });
    pm.test('首次处理: 不是 replayed', function () { pm.expect(a.replayed === undefined || a.replayed === false, 'replayed = ' + a.replayed).to.equal(true); });
    pm.test('tickets_issued 不为空: 每购买一件一张票 (' + expected.length + ' 张)', function () {
        pm.expect(a.tickets_issued).to.be.an('array').with.lengthOf(expected.length);
    });
    pm.test('票券包含 ticket_code (TKT-..., 互不相同), product_id, product_name', function () {
        a.tickets_issued.forEach(function (t) {
            pm.expect(t.ticket_code).to.match(/^TKT-/);
            pm.expect(t.product_name, 'product_name of ' + t.product_id).to.equal(CATALOGUE[t.product_id].name);
        });
        pm.expect(new Set(codesOf(a.tickets_issued)).size, 'distinct codes').to.equal(expected.length);
        pm.expect(a.tickets_issued.map(function (t) { return t.product_id; }).sort(), 'product ids').to.eql(expected.sort());
    });
}
function checkReplay(a, first) {
    pm.test('幂等响应: replayed = true', function () { pm.expect(a.replayed).to.equal(true); });
    pm.test('幂等响应: 与首次应答相同 (同一批票券, 未重复发放)', function () {
        const x = Object.assign({}, a); delete x.replayed;
        const y = Object.assign({}, first); delete y.replayed;
        pm.expect(x).to.eql(y);
    });
}
function checkFailedAnswer(a, orderId) {
    pm.test('返回 status = failed, error = "Payment failed"', function () {
        pm.expect(a.status).to.equal('failed');
        pm.expect(a.error).to.equal('Payment failed');
    });
    pm.test('order_id = ' + orderId + ', order_status = PENDING', function () {
        pm.expect(a.order_id).to.equal(orderId);
        pm.expect(a.order_status).to.equal('PENDING');
    });
    pm.test('无票券发放 (tickets_issued 缺省或为空)', function () {
        pm.expect(a.tickets_issued === undefined || (Array.isArray(a.tickets_issued) && a.tickets_issued.length === 0),
            'tickets_issued = ' + JSON.stringify(a.tickets_issued)).to.equal(true);
    });
}
function checkConflict(a) {
    pm.test('返回 status = conflict, code = notification_conflict', function () {
        pm.expect(a.status).to.equal('conflict');
        pm.expect(a.code).to.equal('notification_conflict');
    });
}
"""

LIB_GATE = r"""
const GATE_STAFF = 'Gate Staff';
const TICKET_CODE = /^TKT-[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{16}$/;
const UNKNOWN_TICKET = 'TKT-ZZZZZZZZZZZZZZZZ';
function checkRedeemAnswer(a, code, entitlement, usesLeft, ticketStatus, replayed) {
    pm.test('核销应答: ticket_code, uses_left = ' + usesLeft + ', ticket_status = ' + ticketStatus + ', replayed = ' + replayed, function () {
        pm.expect(a.ticket_code, 'ticket_code').to.equal(code);
        pm.expect(a.uses_left, 'uses_left').to.equal(usesLeft);
        pm.expect(a.ticket_status, 'ticket_status').to.equal(ticketStatus);
        pm.expect(a.replayed, 'replayed').to.equal(replayed);
    });
    pm.test('redemption: id, entitlement = ' + entitlement + ', location = 本次运行的闸机, staff = ' + GATE_STAFF + ', redeemed_at 为 RFC 3339', function () {
        const r = a.redemption;
        pm.expect(Number.isInteger(r.id) && r.id > 0, 'id = ' + r.id).to.equal(true);
        pm.expect(r.entitlement, 'entitlement').to.equal(entitlement);
        pm.expect(r.location, 'location').to.equal(v('tkGate'));
        pm.expect(r.staff.name, 'staff.name').to.equal(GATE_STAFF);
        pm.expect(Number.isInteger(r.staff.user_id), 'staff.user_id').to.equal(true);
        pm.expect(r.redeemed_at, 'redeemed_at').to.match(RFC3339);
    });
}
function usesLeftOf(t) {
    const left = {};
    (t.entitlements || []).forEach(function (e) { left[e.code] = e.uses_left; });
    return left;
}
function ticketAs(code, token, cb) {
    call('GET', '/tickets/' + code, token, undefined, function (err, res, json) {
        pm.test('GET /tickets/' + code + ' answers 200', function () {
            pm.expect(err, 'transport error').to.equal(null);
            pm.expect(res.code).to.equal(200);
        });
        cb(json || {});
    });
}
function scansAt(query, cb) {
    const path = '/admin/tenants/' + tenant + '/redemptions?location=' + encodeURIComponent(v('tkGate')) + (query ? '&' + query : '');
    call('GET', path, pm.variables.get('adminToken'), undefined, function (err, res, json) {
        pm.test('[operator] GET ' + path.split('?')[0] + '?' + (query || 'location=…') + ' answers 200', function () {
            pm.expect(err, 'transport error').to.equal(null);
            pm.expect(res.code).to.equal(200);
        });
        cb((json && json.redemptions) || []);
    });
}
function scanLabel(s) { return s.accepted ? s.entitlement : s.reason; }
function qrSide(width) {
    // 8 px modules and a 4-module quiet zone: width = 8 × (size + 8), size = 21 + 4k (a full QR symbol).
    const modules = width / 8 - 8;
    pm.expect(width % 8, 'width is a whole number of 8 px modules').to.equal(0);
    pm.expect(modules >= 21 && (modules - 21) % 4 === 0, modules + ' modules is a QR symbol size').to.equal(true);
    return modules;
}
"""


def _chunks():
    """Split the helper libraries into top-level `const NAME` / `function NAME` chunks."""
    chunks = {}
    order = []
    for lib in (LIB_CORE, LIB_HTTP, LIB_ORDER, LIB_TICKET, LIB_NOTIFY, LIB_GATE):
        current = None
        for line in lib.strip("\n").split("\n"):
            m = re.match(r"^(?:const|function) ([A-Za-z0-9_]+)", line)
            if m:
                current = m.group(1)
                order.append(current)
                chunks[current] = []
            if current is not None:
                chunks[current].append(line)
    return order, {k: "\n".join(v).rstrip() for k, v in chunks.items()}


CHUNK_ORDER, CHUNKS = _chunks()


def with_libs(src: str) -> str:
    """Prefix `src` with the helper functions it uses, directly or through other helpers."""
    src = src.strip("\n")
    needed = set()
    frontier = [src]
    while frontier:
        text = frontier.pop()
        for name in CHUNK_ORDER:
            if name not in needed and re.search(r"\b%s\b" % re.escape(name), text):
                needed.add(name)
                frontier.append(CHUNKS[name])
    if not needed:
        return src
    parts = ["// ---- helpers (inlined: Postman scripts cannot share functions) ----"]
    parts += [CHUNKS[name] for name in CHUNK_ORDER if name in needed]
    parts.append("// ---- end of helpers ----")
    return "\n".join(parts + ["", src])


ALL_SCRIPTS = []


def event(listen: str, src: str) -> dict:
    code = with_libs(src)
    ALL_SCRIPTS.append(code)
    return {"listen": listen, "script": {"type": "text/javascript", "exec": code.split("\n")}}


def url(path: str, query=None) -> dict:
    raw = "{{baseUrl}}" + path
    segs = [s for s in path.split("?")[0].split("/") if s]
    u = {"raw": raw, "host": ["{{baseUrl}}"], "path": segs}
    if query:
        u["raw"] += "?" + "&".join(f"{k}={val}" for k, val in query)
        u["query"] = [{"key": k, "value": val} for k, val in query]
    return u


TOKENS = {"user": "{{userToken}}", "staff": "{{staffToken}}", "admin": "{{adminToken}}"}


def req(name, method, path, *, auth="user", tenant="{{tenant}}", body=None, pre=None, test=None,
        desc=None, query=None, content_type="application/json", accept=None):
    headers = []
    if tenant is not None:
        headers.append({"key": "X-Tenant-ID", "value": tenant})
    if auth is not None:
        token = TOKENS.get(auth, auth)
        headers.append({"key": "Authorization", "value": f"Bearer {token}"})
    if accept is not None:
        headers.append({"key": "Accept", "value": accept})
    r = {"method": method, "header": headers, "url": url(path, query)}
    if body is not None:
        headers.append({"key": "Content-Type", "value": content_type})
        r["body"] = {"mode": "raw", "raw": body, "options": {"raw": {"language": "json"}}}
    if desc:
        r["description"] = desc
    item = {"name": name, "request": r, "event": []}
    if pre:
        item["event"].append(event("prerequest", pre))
    if test:
        item["event"].append(event("test", test))
    if not item["event"]:
        del item["event"]
    return item


def folder(name, desc, items):
    return {"name": name, "description": desc, "item": items}


def notify_body(order_var, txn_var, status, amount_expr):
    return ('{\n  "order_id": {{%s}},\n  "gateway_txn_id": "{{%s}}",\n  "status": "%s",\n  "amount": %s\n}'
            % (order_var, txn_var, status, amount_expr))


ORDER_101x1 = '{\n  "items": [\n    {"product_id": 101, "quantity": 1}\n  ]\n}'

STATUS = lambda code: f"pm.test('返回状态码 {code}', function () {{ pm.response.to.have.status({code}); }});"

# ============================================================================================
# 00 Setup
# ============================================================================================
setup = folder("00 准备 Setup", "服务存活与演示数据基线。", [
    req("Setup: GET /healthz 服务存活", "GET", "/healthz", auth=None, tenant=None,
        test=STATUS(200)),
    req("Setup: 演示商品 101 / 102 与库存基线 (operator)", "GET", "/admin/tenants/{{tenant}}/products/101",
        auth="admin",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const p = pm.response.json();
pm.test('product 101: "3-in-1 Transport Pass", price 9900', function () {
    pm.expect(p.product_id).to.equal(101);
    pm.expect(p.name).to.equal(CATALOGUE[101].name);
    pm.expect(p.price).to.equal(CATALOGUE[101].price);
});
pm.test('stock / reserved 为非负整数且 reserved ≤ stock', function () {
    pm.expect(Number.isInteger(p.stock) && p.stock >= 0, 'stock = ' + p.stock).to.equal(true);
    pm.expect(Number.isInteger(p.reserved) && p.reserved >= 0, 'reserved = ' + p.reserved).to.equal(true);
    pm.expect(p.reserved).to.be.at.most(p.stock);
});
pm.test('product 101 还有足够可售库存跑完本集合 (≥ 20)', function () {
    pm.expect(p.stock - p.reserved).to.be.at.least(20);
});
call('GET', '/admin/tenants/' + tenant + '/products/102', pm.variables.get('adminToken'), undefined, function (err, res, q) {
    pm.test('product 102: "Airport Express Single", price 2500, 可售 ≥ 10', function () {
        pm.expect(err).to.equal(null);
        pm.expect(res.code).to.equal(200);
        pm.expect(q.product_id).to.equal(102);
        pm.expect(q.name).to.equal(CATALOGUE[102].name);
        pm.expect(q.price).to.equal(CATALOGUE[102].price);
        pm.expect(q.stock - q.reserved).to.be.at.least(10);
    });
});
"""),
])

# ============================================================================================
# Module 1: 订单创建
# ============================================================================================
module1 = folder("Module 1 订单创建 (order-create)", "Runbook US-004 Module 1: TC-PAY-001, TC-PAY-002。", [
    req("TC-PAY-001 创建待支付订单", "POST", "/orders", body=ORDER_101x1,
        desc="order-create.AC-1: 有效商品和数量 → 200, PENDING, order_id, out_trade_no。待支付订单占用库存 (reserved +1, stock 不变)。",
        pre="snapshot('m1Before', [101]);",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const o = pm.response.json();
const total = checkNewOrder(o, [[101, 1]]);
pm.collectionVariables.set('m1OrderId', o.order_id);
pm.collectionVariables.set('m1Total', total);
expectCounters('待支付订单占用库存: reserved +1, stock 不变', 'm1Before', { 101: [0, 1] });
"""),
    req("TC-PAY-002 订单包含商品明细 (2×101 + 1×102)", "POST", "/orders",
        body='{\n  "items": [\n    {"product_id": 101, "quantity": 2},\n    {"product_id": 102, "quantity": 1}\n  ]\n}',
        desc="order-create.AC-2: 多个商品项 → 订单含全部商品, 金额 = 2×9900 + 2500 = 22300。",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const o = pm.response.json();
const total = checkNewOrder(o, [[101, 2], [102, 1]]);
pm.test('total_amount = 2×9900 + 1×2500 = 22300', function () { pm.expect(o.total_amount).to.equal(2 * 9900 + 2500); });
pm.collectionVariables.set('m1MultiOrderId', o.order_id);
pm.collectionVariables.set('m1MultiTotal', total);
saveJson('m1MultiOrder', o);
"""),
    req("TC-PAY-002 GET /orders/{id} 明细一致", "GET", "/orders/{{m1MultiOrderId}}",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const o = pm.response.json();
const created = loadJson('m1MultiOrder');
pm.test('与创建时相同: order_id, out_trade_no, status, payment_status, total_amount, currency, items, created_at, expires_at', function () {
    ['order_id', 'out_trade_no', 'status', 'payment_status', 'total_amount', 'currency', 'created_at', 'expires_at'].forEach(function (k) {
        pm.expect(o[k], k).to.eql(created[k]);
    });
    const byId = function (a, b) { return a.product_id - b.product_id; };
    pm.expect(o.items.slice().sort(byId), 'items').to.eql(created.items.slice().sort(byId));
});
pm.test('未支付: paid_at / transaction_id 为 null, tickets 为空', function () {
    pm.expect(o).to.have.property('paid_at', null);
    pm.expect(o).to.have.property('transaction_id', null);
    pm.expect(o.tickets).to.be.an('array').that.is.empty;
});
"""),
])

# ============================================================================================
# Module 2: 支付通知处理
# ============================================================================================
module2 = folder("Module 2 支付通知处理 (payment-webhook)", "Runbook US-004 Module 2: TC-PAY-003..006。", [
    req("TC-PAY-003 支付成功通知", "POST", "/payments/notify", auth=None,
        body=notify_body("m1MultiOrderId", "m2TxnId", "SUCCESS", "{{m1MultiTotal}}"),
        desc="payment-webhook.AC-1: SUCCESS → processed, PAID, 每件一张票; 库存扣减一次 (stock 与 reserved 各减购买数量)。",
        pre=r"""
pm.collectionVariables.set('m2TxnId', newTxnId('P003'));
snapshot('m2Before', [101, 102]);
""",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const a = pm.response.json();
checkProcessed(a, num('m1MultiOrderId'), [[101, 2], [102, 1]]);
saveJson('m2First', a);
expectCounters('库存扣减一次', 'm2Before', { 101: [-2, -2], 102: [-1, -1] });
"""),
    req("TC-PAY-003 订单已支付 (GET /orders/{id})", "GET", "/orders/{{m1MultiOrderId}}",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const o = pm.response.json();
const first = loadJson('m2First');
pm.test('status = PAID, payment_status = 2', function () {
    pm.expect(o.status).to.equal('PAID');
    pm.expect(o.payment_status).to.equal(2);
});
pm.test('paid_at 为 RFC 3339 时间, transaction_id = gateway_txn_id', function () {
    pm.expect(o.paid_at).to.match(RFC3339);
    pm.expect(o.transaction_id).to.equal(v('m2TxnId'));
});
pm.test('订单 tickets = 通知应答中的 tickets_issued (3 张)', function () {
    pm.expect(o.tickets).to.be.an('array').with.lengthOf(3);
    pm.expect(codesOf(o.tickets)).to.eql(codesOf(first.tickets_issued));
});
o.tickets.forEach(function (t) { checkTicket(t, o.order_id); });
"""),
    req("TC-PAY-004 支付失败通知", "POST", "/payments/notify", auth=None,
        body=notify_body("m1OrderId", "m2FailTxnId", "FAILED", "{{m1Total}}"),
        desc="payment-webhook.AC-2: FAILED → status failed, order_status PENDING, 无票券; 库存仍为该订单保留。",
        pre=r"""
pm.collectionVariables.set('m2FailTxnId', newTxnId('P004F'));
snapshot('m2FailBefore', [101]);
""",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
checkFailedAnswer(pm.response.json(), num('m1OrderId'));
expectCounters('支付失败: 库存不扣减, 保留不变', 'm2FailBefore', { 101: [0, 0] });
"""),
    req("TC-PAY-004 订单保持 PENDING, payment_status = 4, 无票券", "GET", "/orders/{{m1OrderId}}",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const o = pm.response.json();
pm.test('status = PENDING, payment_status = 4 (支付失败)', function () {
    pm.expect(o.status).to.equal('PENDING');
    pm.expect(o.payment_status).to.equal(4);
});
pm.test('无票券发放, 未支付 (paid_at = null)', function () {
    pm.expect(o.tickets).to.be.an('array').that.is.empty;
    pm.expect(o).to.have.property('paid_at', null);
});
myTicketsOf(o.order_id, function (tickets) {
    pm.test('/my/tickets 中没有该订单的票券', function () { pm.expect(tickets).to.be.empty; });
});
"""),
    req("TC-PAY-004 失败后可再次支付 (新 gateway_txn_id SUCCESS)", "POST", "/payments/notify", auth=None,
        body=notify_body("m1OrderId", "m2RetryTxnId", "SUCCESS", "{{m1Total}}"),
        desc="CONTRACT: 支付失败后订单仍为 PENDING, 客户可再次支付。",
        pre="pm.collectionVariables.set('m2RetryTxnId', newTxnId('P004S'));",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const a = pm.response.json();
checkProcessed(a, num('m1OrderId'), [[101, 1]]);
pm.collectionVariables.set('m2RetryTicketCode', a.tickets_issued[0].ticket_code);
"""),
    req("TC-PAY-005 幂等性 - 重复通知 (相同 txn_id)", "POST", "/payments/notify", auth=None,
        body=notify_body("m1MultiOrderId", "m2TxnId", "SUCCESS", "{{m1MultiTotal}}"),
        desc="payment-webhook.AC-3: 与 TC-PAY-003 完全相同的通知 → 200, 与首次相同的应答 + replayed: true; 不重复发票, 不重复扣库存。",
        pre="snapshot('m2DupBefore', [101, 102]);",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
checkReplay(pm.response.json(), loadJson('m2First'));
getOrder(num('m1MultiOrderId'), function (o) {
    pm.test('不创建重复票券: 订单仍只有首次发放的 3 张票', function () {
        pm.expect(o.tickets).to.be.an('array').with.lengthOf(3);
        pm.expect(codesOf(o.tickets)).to.eql(codesOf(loadJson('m2First').tickets_issued));
    });
});
myTicketsOf(num('m1MultiOrderId'), function (tickets) {
    pm.test('/my/tickets 中该订单仍只有 3 张票', function () { pm.expect(tickets).to.have.lengthOf(3); });
});
expectCounters('重复通知不重复扣库存', 'm2DupBefore', { 101: [0, 0], 102: [0, 0] });
"""),
    req("TC-PAY-006 无效订单 ID", "POST", "/payments/notify", auth=None,
        body=notify_body("unknownOrderId", "m2UnknownTxnId", "SUCCESS", "9900"),
        desc="payment-webhook.AC-4: 不存在的 order_id → 404, 提示订单不存在。",
        pre="pm.collectionVariables.set('m2UnknownTxnId', newTxnId('P006'));",
        test=r"""
pm.test('返回状态码 404', function () { pm.response.to.have.status(404); });
const a = pm.response.json();
pm.test('提示订单不存在: status = error, error = "Order not found", code = order_not_found', function () {
    pm.expect(a.status).to.equal('error');
    pm.expect(a.error).to.equal('Order not found');
    pm.expect(a.code).to.equal('order_not_found');
});
"""),
])

# ============================================================================================
# Module 3: 票券发放验证
# ============================================================================================
ATOM_ARM = '{\n  "point": "tickets.after_first_ticket",\n  "times": 1\n}'


def atomicity_requests(tc, prefix, lines, body_items):
    """The fault-injection drill: order → arm fault → notify fails (500) → nothing changed → retry succeeds."""
    products = sorted({pid for pid, _ in lines})
    units_delta = {pid: sum(q for p, q in lines if p == pid) for pid in products}
    lines_js = json.dumps(lines)
    deltas_js = "{ " + ", ".join(f"{pid}: [-{n}, -{n}]" for pid, n in units_delta.items()) + " }"
    zero_js = "{ " + ", ".join(f"{pid}: [0, 0]" for pid in products) + " }"
    ids = json.dumps(products)
    return [
        req(f"{tc} 准备: 创建待支付订单", "POST", "/orders", body=body_items,
            test=f"""
pm.test('返回状态码 200', function () {{ pm.response.to.have.status(200); }});
const o = pm.response.json();
const total = checkNewOrder(o, {lines_js});
pm.collectionVariables.set('{prefix}OrderId', o.order_id);
pm.collectionVariables.set('{prefix}Total', total);
pm.collectionVariables.set('{prefix}TxnId', newTxnId('{tc.replace("TC-PAY-", "P")}'));
"""),
        req(f"{tc} 准备: 注入故障 tickets.after_first_ticket (operator)", "POST", "/admin/faults", auth="admin",
            body=ATOM_ARM,
            desc="需要服务端以 TICKETING_FAULT_INJECTION=1 运行: 下一次到达该点的通知在出票中途失败。",
            pre=f"snapshot('{prefix}Before', {ids});",
            test=r"""
pm.test('返回状态码 200 (服务端需以 TICKETING_FAULT_INJECTION=1 运行, adminToken = TICKETING_ADMIN_TOKEN)', function () {
    pm.response.to.have.status(200);
});
"""),
        req(f"{tc} 出票中途异常 → 500, 整体回滚", "POST", "/payments/notify", auth=None,
            body=notify_body(f"{prefix}OrderId", f"{prefix}TxnId", "SUCCESS", "{{%sTotal}}" % prefix),
            test=f"""
pm.test('返回状态码 500', function () {{ pm.response.to.have.status(500); }});
const a = pm.response.json();
pm.test('status = error, code = internal_error', function () {{
    pm.expect(a.status).to.equal('error');
    pm.expect(a.code).to.equal('internal_error');
}});
pm.test('无部分发放: 应答中没有 tickets_issued', function () {{
    pm.expect(a.tickets_issued === undefined || a.tickets_issued.length === 0).to.equal(true);
}});
expectCounters('库存与保留均未改变', '{prefix}Before', {zero_js});
"""),
        req(f"{tc} 订单状态不变、无部分出票", "GET", "/orders/{{%sOrderId}}" % prefix,
            test=f"""
pm.test('返回状态码 200', function () {{ pm.response.to.have.status(200); }});
const o = pm.response.json();
pm.test('订单状态不变: status = PENDING, payment_status = 0', function () {{
    pm.expect(o.status).to.equal('PENDING');
    pm.expect(o.payment_status).to.equal(0);
}});
pm.test('无部分发放: tickets 为空, paid_at / transaction_id 为 null', function () {{
    pm.expect(o.tickets).to.be.an('array').that.is.empty;
    pm.expect(o).to.have.property('paid_at', null);
    pm.expect(o).to.have.property('transaction_id', null);
}});
myTicketsOf(o.order_id, function (tickets) {{
    pm.test('/my/tickets 中没有该订单的票券', function () {{ pm.expect(tickets).to.be.empty; }});
}});
"""),
        req(f"{tc} 可重试处理: 相同通知再次发送 → processed", "POST", "/payments/notify", auth=None,
            body=notify_body(f"{prefix}OrderId", f"{prefix}TxnId", "SUCCESS", "{{%sTotal}}" % prefix),
            test=f"""
pm.test('返回状态码 200', function () {{ pm.response.to.have.status(200); }});
const a = pm.response.json();
checkProcessed(a, num('{prefix}OrderId'), {lines_js});
saveJson('{prefix}First', a);
expectCounters('重试成功后库存只扣减一次', '{prefix}Before', {deltas_js});
"""),
        req(f"{tc} 票券只发放一次", "GET", "/orders/{{%sOrderId}}" % prefix,
            test=f"""
pm.test('返回状态码 200', function () {{ pm.response.to.have.status(200); }});
const o = pm.response.json();
const first = loadJson('{prefix}First');
pm.test('status = PAID, payment_status = 2', function () {{
    pm.expect(o.status).to.equal('PAID');
    pm.expect(o.payment_status).to.equal(2);
}});
pm.test('订单票券 = 重试应答中的 tickets_issued, 无重复', function () {{
    pm.expect(codesOf(o.tickets)).to.eql(codesOf(first.tickets_issued));
}});
o.tickets.forEach(function (t) {{ checkTicket(t, o.order_id); }});
"""),
    ]


module3 = folder("Module 3 票券发放验证 (ticket-issuance)", "Runbook US-004 Module 3: TC-PAY-007..009。", [
    req("TC-PAY-007 票券同步发放 (GET /my/tickets)", "GET", "/my/tickets",
        desc="ticket-issuance.AC-1: 支付成功后新票券立即可见, ACTIVE, 权益信息正确; 列表按发放时间倒序。",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const body = pm.response.json();
pm.test('返回 {"tickets": [...]}', function () { pm.expect(body.tickets).to.be.an('array'); });
const orderId = num('m1MultiOrderId');
const mine = body.tickets.filter(function (t) { return t.order_id === orderId; });
const issued = loadJson('m2First').tickets_issued;
pm.test('新票券立即可见: 与 TC-PAY-003 应答中的 tickets_issued 相同 (3 张)', function () {
    pm.expect(codesOf(mine)).to.eql(codesOf(issued));
});
pm.test('票券在响应中的 product_id / product_name 与 /my/tickets 一致', function () {
    issued.forEach(function (i) {
        const t = mine.find(function (m) { return m.ticket_code === i.ticket_code; });
        pm.expect(t.product_id).to.equal(i.product_id);
        pm.expect(t.product_name).to.equal(i.product_name);
    });
});
mine.forEach(function (t) { checkTicket(t, orderId); });
pm.test('newest first: issued_at 非递增, 最新发放的票 (TC-PAY-004 重新支付) 在最前', function () {
    const times = body.tickets.map(function (t) { return Date.parse(t.issued_at); });
    for (let i = 1; i < times.length; i++) {
        pm.expect(times[i], 'tickets[' + i + '].issued_at').to.be.at.most(times[i - 1]);
    }
    pm.expect(body.tickets[0].ticket_code).to.equal(v('m2RetryTicketCode'));
});
pm.collectionVariables.set('m3TicketCode', issued[0].ticket_code);
"""),
    req("TC-PAY-008 票券关联订单 (GET /tickets/{code}, 持有人)", "GET", "/tickets/{{m3TicketCode}}",
        desc="ticket-issuance.AC-2: ticket.order_id = 原订单 ID, 可追溯到原始订单。",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const t = pm.response.json();
const orderId = num('m1MultiOrderId');
pm.test('ticket.order_id = 原订单 ID', function () {
    pm.expect(t.ticket_code).to.equal(v('m3TicketCode'));
    pm.expect(t.order_id).to.equal(orderId);
});
checkTicket(t, orderId);
getOrder(t.order_id, function (o) {
    pm.test('可追溯到原始订单: 订单 ' + t.order_id + ' 已支付且包含该票', function () {
        pm.expect(o.order_id).to.equal(orderId);
        pm.expect(o.status).to.equal('PAID');
        pm.expect(codesOf(o.tickets)).to.include(t.ticket_code);
        const item = o.items.find(function (i) { return i.product_id === t.product_id; });
        pm.expect(item, 'order line for product ' + t.product_id).to.be.an('object');
    });
});
"""),
    req("TC-PAY-008 工作人员可查看票券 (staff token)", "GET", "/tickets/{{m3TicketCode}}", auth="staff",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const t = pm.response.json();
pm.test('同一张票, ticket.order_id = 原订单 ID', function () {
    pm.expect(t.ticket_code).to.equal(v('m3TicketCode'));
    pm.expect(t.order_id).to.equal(num('m1MultiOrderId'));
    pm.expect(t.status).to.equal('ACTIVE');
});
"""),
] + atomicity_requests("TC-PAY-009", "m3Atom", [[101, 2]],
                       '{\n  "items": [\n    {"product_id": 101, "quantity": 2}\n  ]\n}'))

# ============================================================================================
# QA Round 1: 核心功能
# ============================================================================================
round1 = folder("QA Round 1 核心功能", "QA E2E Checklist Round 1: TC-ORDER-101, TC-PAY-101..104。", [
    req("TC-ORDER-101 创建待支付订单 (product 101 × 1)", "POST", "/orders", body=ORDER_101x1,
        pre="snapshot('qaOrderBefore', [101]);",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const o = pm.response.json();
const total = checkNewOrder(o, [[101, 1]]);
pm.collectionVariables.set('qaOrderId', o.order_id);
pm.collectionVariables.set('qaTotal', total);
pm.collectionVariables.set('qaTxnId', newTxnId('P101'));
expectCounters('订单创建成功后库存被保留 (reserved +1), 尚未扣减', 'qaOrderBefore', { 101: [0, 1] });
"""),
    req("TC-PAY-103 准备: 支付前库存快照 (operator)", "GET", "/admin/tenants/{{tenant}}/products/101", auth="admin",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const p = pm.response.json();
pm.test('stock / reserved 为整数', function () {
    pm.expect(Number.isInteger(p.stock)).to.equal(true);
    pm.expect(Number.isInteger(p.reserved)).to.equal(true);
});
saveJson('qaPayBefore', { 101: { stock: p.stock, reserved: p.reserved } });
"""),
    req("TC-PAY-101 支付成功通知处理", "POST", "/payments/notify", auth=None,
        body=notify_body("qaOrderId", "qaTxnId", "SUCCESS", "{{qaTotal}}"),
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const a = pm.response.json();
checkProcessed(a, num('qaOrderId'), [[101, 1]]);
saveJson('qaFirst', a);
pm.collectionVariables.set('qaTicketCode', a.tickets_issued[0].ticket_code);
"""),
    req("TC-PAY-102 票券同步发放 (GET /my/tickets)", "GET", "/my/tickets",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const body = pm.response.json();
pm.test('新票券立即可见, 且作为最新票券排在最前', function () {
    pm.expect(body.tickets).to.be.an('array').that.is.not.empty;
    pm.expect(body.tickets[0].ticket_code).to.equal(v('qaTicketCode'));
});
checkTicket(body.tickets[0], num('qaOrderId'));
pm.test('可追溯到原始订单 ID', function () { pm.expect(body.tickets[0].order_id).to.equal(num('qaOrderId')); });
"""),
    req("TC-PAY-103 库存扣减一次 (operator)", "GET", "/admin/tenants/{{tenant}}/products/101", auth="admin",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const p = pm.response.json();
const before = loadJson('qaPayBefore')[101];
pm.test('商品库存减 1 (stock ' + before.stock + ' → ' + (before.stock - 1) + ')', function () {
    pm.expect(p.stock).to.equal(before.stock - 1);
});
pm.test('订单的保留库存已释放 (reserved − 1), 没有再次扣减', function () {
    pm.expect(p.reserved).to.equal(before.reserved - 1);
});
"""),
    req("TC-PAY-104 核销记录可追溯 (GET /tickets/{code})", "GET", "/tickets/{{qaTicketCode}}",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const t = pm.response.json();
pm.test('票券包含 order_id = 原订单 ID', function () {
    pm.expect(t.ticket_code).to.equal(v('qaTicketCode'));
    pm.expect(t.order_id).to.equal(num('qaOrderId'));
});
pm.test('redemptions 为列表 (尚未核销)', function () { pm.expect(t.redemptions).to.be.an('array').that.is.empty; });
checkTicket(t, num('qaOrderId'));
getOrder(t.order_id, function (o) {
    pm.test('可追溯到原始订单: PAID, transaction_id = gateway_txn_id, 含该票', function () {
        pm.expect(o.status).to.equal('PAID');
        pm.expect(o.transaction_id).to.equal(v('qaTxnId'));
        pm.expect(codesOf(o.tickets)).to.eql([t.ticket_code]);
    });
});
"""),
])

# ============================================================================================
# QA Round 2: 异常场景
# ============================================================================================
round2 = folder("QA Round 2 异常场景", "QA E2E Checklist Round 2: TC-PAY-201..204。", [
    req("TC-PAY-201 准备: 创建待支付订单", "POST", "/orders", body=ORDER_101x1,
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const o = pm.response.json();
checkNewOrder(o, [[101, 1]]);
pm.collectionVariables.set('qaFailOrderId', o.order_id);
pm.collectionVariables.set('qaFailTotal', o.total_amount);
pm.collectionVariables.set('qaFailTxnId', newTxnId('P201'));
"""),
    req("TC-PAY-201 支付失败通知处理", "POST", "/payments/notify", auth=None,
        body=notify_body("qaFailOrderId", "qaFailTxnId", "FAILED", "{{qaFailTotal}}"),
        pre="snapshot('qaFailBefore', [101]);",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
checkFailedAnswer(pm.response.json(), num('qaFailOrderId'));
expectCounters('支付失败不扣库存', 'qaFailBefore', { 101: [0, 0] });
"""),
    req("TC-PAY-201 订单保持 PENDING 且无票券", "GET", "/orders/{{qaFailOrderId}}",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const o = pm.response.json();
pm.test('status = PENDING, payment_status = 4', function () {
    pm.expect(o.status).to.equal('PENDING');
    pm.expect(o.payment_status).to.equal(4);
});
pm.test('无票券发放', function () { pm.expect(o.tickets).to.be.an('array').that.is.empty; });
myTicketsOf(o.order_id, function (tickets) {
    pm.test('/my/tickets 中没有该订单的票券', function () { pm.expect(tickets).to.be.empty; });
});
"""),
    req("TC-PAY-202 重复支付通知幂等性", "POST", "/payments/notify", auth=None,
        body=notify_body("qaOrderId", "qaTxnId", "SUCCESS", "{{qaTotal}}"),
        desc="再次发送 TC-PAY-101 的通知 (相同 gateway_txn_id), 然后再发一次: 200 幂等响应, 不重复发票, 库存不重复扣减。",
        pre="snapshot('qaDupBefore', [101]);",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const first = loadJson('qaFirst');
checkReplay(pm.response.json(), first);
const again = { order_id: num('qaOrderId'), gateway_txn_id: v('qaTxnId'), status: 'SUCCESS', amount: num('qaTotal') };
call('POST', '/payments/notify', null, again, function (err, res, a) {
    pm.test('第三次相同通知: 200 且 replayed = true, 相同票券', function () {
        pm.expect(err).to.equal(null);
        pm.expect(res.code).to.equal(200);
        pm.expect(a.replayed).to.equal(true);
        pm.expect(a.status).to.equal('processed');
        pm.expect(codesOf(a.tickets_issued)).to.eql(codesOf(first.tickets_issued));
    });
    getOrder(num('qaOrderId'), function (o) {
        pm.test('不创建重复票券: 订单仍只有 1 张票', function () {
            pm.expect(codesOf(o.tickets)).to.eql(codesOf(first.tickets_issued));
        });
        expectCounters('库存不重复扣减', 'qaDupBefore', { 101: [0, 0] });
    });
});
"""),
    req("TC-PAY-203 无效订单 ID 被拒绝", "POST", "/payments/notify", auth=None,
        body=notify_body("unknownOrderId", "qaUnknownTxnId", "SUCCESS", "9900"),
        pre="pm.collectionVariables.set('qaUnknownTxnId', newTxnId('P203'));",
        test=r"""
pm.test('返回状态码 404', function () { pm.response.to.have.status(404); });
const a = pm.response.json();
pm.test('提示订单不存在 (status = error, error = "Order not found", code = order_not_found)', function () {
    pm.expect(a.status).to.equal('error');
    pm.expect(a.error).to.equal('Order not found');
    pm.expect(a.code).to.equal('order_not_found');
});
"""),
    req("TC-PAY-204 数据冲突: 同一 txn_id 对应另一订单 → 409", "POST", "/payments/notify", auth=None,
        body=notify_body("qaFailOrderId", "qaTxnId", "SUCCESS", "{{qaFailTotal}}"),
        desc="TC-PAY-101 已记录的 gateway_txn_id 用于另一订单 (TC-PAY-201 的待支付订单): 拒绝, 标记为冲突, 不改变任何状态。",
        pre="snapshot('qaConflictBefore', [101]);",
        test=r"""
pm.test('返回状态码 409', function () { pm.response.to.have.status(409); });
checkConflict(pm.response.json());
getOrder(num('qaFailOrderId'), function (o) {
    pm.test('另一订单未被改变: PENDING, payment_status 4, 无票券', function () {
        pm.expect(o.status).to.equal('PENDING');
        pm.expect(o.payment_status).to.equal(4);
        pm.expect(o.tickets).to.be.empty;
    });
});
getOrder(num('qaOrderId'), function (o) {
    pm.test('原订单未被改变: PAID, 仍只有原来的 1 张票', function () {
        pm.expect(o.status).to.equal('PAID');
        pm.expect(codesOf(o.tickets)).to.eql(codesOf(loadJson('qaFirst').tickets_issued));
    });
});
expectCounters('冲突通知不改变库存', 'qaConflictBefore', { 101: [0, 0] });
"""),
    req("TC-PAY-204 数据冲突: 同一 txn_id 不同金额 → 409", "POST", "/payments/notify", auth=None,
        body=notify_body("qaOrderId", "qaTxnId", "SUCCESS", "1"),
        test=r"""
pm.test('返回状态码 409', function () { pm.response.to.have.status(409); });
checkConflict(pm.response.json());
"""),
    req("TC-PAY-204 数据冲突: 同一 txn_id 不同状态 (FAILED) → 409", "POST", "/payments/notify", auth=None,
        body=notify_body("qaOrderId", "qaTxnId", "FAILED", "{{qaTotal}}"),
        test=r"""
pm.test('返回状态码 409', function () { pm.response.to.have.status(409); });
checkConflict(pm.response.json());
getOrder(num('qaOrderId'), function (o) {
    pm.test('原订单未被改变: PAID, payment_status 2, 1 张票', function () {
        pm.expect(o.status).to.equal('PAID');
        pm.expect(o.payment_status).to.equal(2);
        pm.expect(o.tickets).to.have.lengthOf(1);
    });
});
"""),
    req("TC-PAY-204 数据冲突: 金额与订单总额不符 → 409", "POST", "/payments/notify", auth=None,
        body=notify_body("qaFailOrderId", "qaMismatchTxnId", "SUCCESS", "1"),
        pre=r"""
pm.collectionVariables.set('qaMismatchTxnId', newTxnId('P204A'));
snapshot('qaMismatchBefore', [101]);
""",
        test=r"""
pm.test('返回状态码 409', function () { pm.response.to.have.status(409); });
checkConflict(pm.response.json());
getOrder(num('qaFailOrderId'), function (o) {
    pm.test('订单未被改变: PENDING, 无票券', function () {
        pm.expect(o.status).to.equal('PENDING');
        pm.expect(o.tickets).to.be.empty;
    });
});
expectCounters('冲突通知不改变库存', 'qaMismatchBefore', { 101: [0, 0] });
"""),
    req("TC-PAY-204 冲突通知已记录并标记 (operator)", "GET", "/admin/tenants/{{tenant}}/notifications", auth="admin",
        query=[("outcome", "conflict")],
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const list = pm.response.json().notifications;
pm.test('返回 {"notifications": [...]}, 全部 outcome = conflict', function () {
    pm.expect(list).to.be.an('array').that.is.not.empty;
    list.forEach(function (n) { pm.expect(n.outcome).to.equal('conflict'); });
});
const txn = v('qaTxnId');
const same = list.filter(function (n) { return n.gateway_txn_id === txn; });
pm.test('同一 txn_id 的三次冲突通知 (另一订单 / 不同金额 / 不同状态) 均被记录', function () {
    pm.expect(same).to.have.lengthOf(3);
});
pm.test('冲突记录指向通知所涉及的订单', function () {
    pm.expect(same.map(function (n) { return n.order_id; }).sort()).to.eql(
        [num('qaOrderId'), num('qaOrderId'), num('qaFailOrderId')].sort());
});
pm.test('金额不符的通知被记录为冲突, order_id = ' + v('qaFailOrderId'), function () {
    const m = list.filter(function (n) { return n.gateway_txn_id === v('qaMismatchTxnId'); });
    pm.expect(m).to.have.lengthOf(1);
    pm.expect(m[0].order_id).to.equal(num('qaFailOrderId'));
});
"""),
])

# ============================================================================================
# QA Round 3: 边界测试
# ============================================================================================
round3 = folder("QA Round 3 边界测试", "QA E2E Checklist Round 3: TC-PAY-301 (原子性), TC-PAY-302 (并发重复通知)。", atomicity_requests(
    "TC-PAY-301", "qaAtom", [[101, 1], [102, 1]],
    '{\n  "items": [\n    {"product_id": 101, "quantity": 1},\n    {"product_id": 102, "quantity": 1}\n  ]\n}') + [
    req("TC-PAY-301 恢复后再次重复 → 幂等响应", "POST", "/payments/notify", auth=None,
        body=notify_body("qaAtomOrderId", "qaAtomTxnId", "SUCCESS", "{{qaAtomTotal}}"),
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
checkReplay(pm.response.json(), loadJson('qaAtomFirst'));
"""),
    req("TC-PAY-302 准备: 创建待支付订单", "POST", "/orders", body=ORDER_101x1,
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const o = pm.response.json();
checkNewOrder(o, [[101, 1]]);
pm.collectionVariables.set('qaRaceOrderId', o.order_id);
pm.collectionVariables.set('qaRaceTotal', o.total_amount);
pm.collectionVariables.set('qaRaceTxnId', newTxnId('P302'));
"""),
    req("TC-PAY-302 准备: 支付前库存快照 (operator)", "GET", "/admin/tenants/{{tenant}}/products/101", auth="admin",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const p = pm.response.json();
saveJson('qaRaceBefore', { 101: { stock: p.stock, reserved: p.reserved } });
"""),
    req("TC-PAY-302 同时发送 5 个相同的支付成功通知", "GET", "/orders/{{qaRaceOrderId}}",
        desc="Pre-request 用 pm.sendRequest 同时发出 5 个完全相同的 SUCCESS 通知并收集全部应答; 本请求随后查询订单。"
             "只有一个通知被处理, 其余为幂等响应 (replayed), 最终只发放一次票券。",
        pre=r"""
const body = { order_id: num('qaRaceOrderId'), gateway_txn_id: v('qaRaceTxnId'), status: 'SUCCESS', amount: num('qaRaceTotal') };
const answers = [];
pm.collectionVariables.set('qaRaceAnswers', '[]');
for (let i = 0; i < 5; i++) {
    // All five are dispatched before any answer arrives: they run concurrently.
    call('POST', '/payments/notify', null, body, function (err, res, json) {
        answers.push({ n: i, error: err ? String(err) : null, code: res ? res.code : null, body: json });
        if (answers.length === 5) { saveJson('qaRaceAnswers', answers); }
    });
}
""",
        test=r"""
const answers = loadJson('qaRaceAnswers');
pm.test('收到全部 5 个应答', function () { pm.expect(answers).to.have.lengthOf(5); });
pm.test('每个应答都是 200 且 status = processed, order_status = PAID', function () {
    answers.forEach(function (a) {
        pm.expect(a.error, 'transport error of #' + a.n).to.equal(null);
        pm.expect(a.code, 'status code of #' + a.n + ': ' + JSON.stringify(a.body)).to.equal(200);
        pm.expect(a.body.status, 'status of #' + a.n).to.equal('processed');
        pm.expect(a.body.order_id).to.equal(num('qaRaceOrderId'));
        pm.expect(a.body.order_status).to.equal('PAID');
    });
});
pm.test('只有一个通知被处理 (恰好 1 个非 replayed), 其余 4 个为幂等响应 (replayed = true)', function () {
    const fresh = answers.filter(function (a) { return a.body && a.body.replayed !== true; });
    const replayed = answers.filter(function (a) { return a.body && a.body.replayed === true; });
    pm.expect(fresh, 'not replayed').to.have.lengthOf(1);
    pm.expect(replayed, 'replayed').to.have.lengthOf(4);
});
pm.test('所有应答携带相同的票券 (1 张)', function () {
    const first = codesOf(answers[0].body.tickets_issued);
    pm.expect(first).to.have.lengthOf(1);
    answers.forEach(function (a) { pm.expect(codesOf(a.body.tickets_issued), '#' + a.n).to.eql(first); });
});
pm.test('返回状态码 200 (GET /orders/{id})', function () { pm.response.to.have.status(200); });
const o = pm.response.json();
pm.test('订单 PAID, payment_status 2, 只发放一次票券 (恰好一组: 1 张, 与应答一致)', function () {
    pm.expect(o.status).to.equal('PAID');
    pm.expect(o.payment_status).to.equal(2);
    pm.expect(codesOf(o.tickets)).to.eql(codesOf(answers[0].body.tickets_issued));
});
myTicketsOf(o.order_id, function (tickets) {
    pm.test('/my/tickets 中该订单只有 1 张票', function () { pm.expect(tickets).to.have.lengthOf(1); });
});
"""),
    req("TC-PAY-302 库存只扣减一次 (operator)", "GET", "/admin/tenants/{{tenant}}/products/101", auth="admin",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const p = pm.response.json();
const before = loadJson('qaRaceBefore')[101];
pm.test('stock 只减 1 (' + before.stock + ' → ' + (before.stock - 1) + ')', function () { pm.expect(p.stock).to.equal(before.stock - 1); });
pm.test('reserved 只释放 1', function () { pm.expect(p.reserved).to.equal(before.reserved - 1); });
"""),
])

# ============================================================================================
# Negative checks
# ============================================================================================


def expect_error(code, err_code=None):
    s = f"pm.test('返回状态码 {code}', function () {{ pm.response.to.have.status({code}); }});\n"
    if err_code:
        s += (f"pm.test('code = {err_code}', function () {{ pm.expect(pm.response.json().code).to.equal('{err_code}'); }});\n")
    return s


negative = folder("负向校验 Negative", "鉴权、输入校验、未知资源与租户隔离。", [
    req("NEG 无 token 创建订单 → 401", "POST", "/orders", auth=None, body=ORDER_101x1,
        test=expect_error(401, "unauthorized")),
    req("NEG 错误 token 创建订单 → 401", "POST", "/orders", auth="not-a-real-token-000", body=ORDER_101x1,
        test=expect_error(401, "unauthorized")),
    req("NEG 无 token 查看我的票券 → 401", "GET", "/my/tickets", auth=None,
        test=expect_error(401, "unauthorized")),
    req("NEG 错误 token 查看订单 → 401", "GET", "/orders/{{m1OrderId}}", auth="not-a-real-token-000",
        test=expect_error(401, "unauthorized")),
    req("NEG 畸形 JSON 请求体 → 422", "POST", "/orders", body='{"items": [{"product_id": 101, "quantity": 1}',
        desc="CONTRACT: 422 invalid input. The contract names no code for a body that is not JSON (the server says invalid_json).",
        test=expect_error(422)),
    req("NEG 缺少 items → 422", "POST", "/orders", body='{}',
        test=expect_error(422, "validation_error")),
    req("NEG items 为空 → 422", "POST", "/orders", body='{\n  "items": []\n}',
        test=expect_error(422, "validation_error")),
    req("NEG quantity = 0 → 422", "POST", "/orders", body='{\n  "items": [\n    {"product_id": 101, "quantity": 0}\n  ]\n}',
        test=expect_error(422, "validation_error")),
    req("NEG quantity 为负数 → 422", "POST", "/orders", body='{\n  "items": [\n    {"product_id": 101, "quantity": -1}\n  ]\n}',
        test=expect_error(422, "validation_error")),
    req("NEG 未知商品 → 404", "POST", "/orders", body='{\n  "items": [\n    {"product_id": 999999, "quantity": 1}\n  ]\n}',
        test=expect_error(404, "product_not_found")),
    req("NEG 库存不足 → 409 (且不部分占用库存)", "POST", "/orders",
        body='{\n  "items": [\n    {"product_id": 101, "quantity": 1},\n    {"product_id": {{probeProductId}}, "quantity": {{probeQuantity}}}\n  ]\n}',
        desc="准备: 确保探测商品 (product {{probeProductId}}, stock 1, 无人购买) 存在 (operator 创建, 重复运行时复用), "
             "然后下单数量 = 可售 + 1。整单被拒绝, 同单中 101 的库存也不被占用。",
        pre=r"""
const id = 90001;
pm.collectionVariables.set('probeProductId', id);
const admin = pm.variables.get('adminToken');
function useCounters(p) {
    pm.collectionVariables.set('probeQuantity', p.stock - p.reserved + 1);
}
call('GET', '/admin/tenants/' + tenant + '/products/' + id, admin, undefined, function (err, res, p) {
    if (res && res.code === 200) { useCounters(p); return; }
    const product = { product_id: id, name: 'Newman Sold-Out Probe', price: 100, stock: 1,
                      entitlements: [{ code: 'probe', name: 'Probe', uses: 1 }] };
    call('POST', '/admin/tenants/' + tenant + '/products', admin, product, function (e2, r2, created) {
        pm.test('[operator] 创建探测商品 ' + id + ' → 200', function () {
            pm.expect(e2).to.equal(null);
            pm.expect(r2.code, JSON.stringify(created)).to.equal(200);
        });
        useCounters(created);
    });
});
snapshot('negStockBefore', [101]);
""",
        test=expect_error(409, "insufficient_stock") + r"""
expectCounters('整单被拒绝: 101 的 reserved / stock 不变', 'negStockBefore', { 101: [0, 0] });
"""),
    req("NEG 其他租户 (X-Tenant-ID: nosuchtenant) 创建订单 → 404", "POST", "/orders", tenant="nosuchtenant",
        body=ORDER_101x1, test=expect_error(404)),
    req("NEG 其他租户 (X-Tenant-ID: nosuchtenant) 查看我的票券 → 404", "GET", "/my/tickets", tenant="nosuchtenant",
        test=expect_error(404)),
    req("NEG 不存在的订单 → 404", "GET", "/orders/{{unknownOrderId}}", test=expect_error(404)),
    req("NEG 不存在的票券 → 404", "GET", "/tickets/TKT-DOES-NOT-EXIST-000", test=expect_error(404)),
    req("NEG 支付通知 status 非法 → 422", "POST", "/payments/notify", auth=None,
        body='{\n  "order_id": {{m1OrderId}},\n  "gateway_txn_id": "MOCK-INVALID-STATUS",\n  "status": "MAYBE",\n  "amount": 9900\n}',
        test=expect_error(422, "validation_error")),
    req("NEG 支付通知缺少 amount → 422", "POST", "/payments/notify", auth=None,
        body='{\n  "order_id": {{m1OrderId}},\n  "gateway_txn_id": "MOCK-MISSING-AMOUNT",\n  "status": "SUCCESS"\n}',
        test=expect_error(422, "validation_error")),
    req("NEG 客户 token 访问 operator API → 401/403", "GET", "/admin/tenants/{{tenant}}/products/101",
        test=r"""
pm.test('返回状态码 401 或 403', function () { pm.expect(pm.response.code).to.be.oneOf([401, 403]); });
"""),
    req("NEG operator API 无 token → 401", "POST", "/admin/faults", auth=None,
        body='{\n  "point": "tickets.after_first_ticket",\n  "times": 1\n}', test=expect_error(401)),
    req("约定: 缺少 X-Tenant-ID 即 default 租户", "GET", "/my/tickets", tenant=None,
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
pm.test('与 default 租户相同: 能看到本次运行发放的票券', function () {
    const codes = pm.response.json().tickets.map(function (t) { return t.ticket_code; });
    pm.expect(codes).to.include(pm.collectionVariables.get('qaTicketCode'));
});
"""),
])

# ============================================================================================
# Module 4: 票券核销、二维码与签名
# ============================================================================================
UNKNOWN_TICKET = "TKT-ZZZZZZZZZZZZZZZZ"  # well-formed, never issued in practice (80 random bits); also in LIB_GATE


def redeem_body(entitlement, nonce=None):
    """A scan at this run's gate (`tkGate`, unique per run, so the operator's list can be filtered)."""
    nonce_line = f',\n  "nonce": "{nonce}"' if nonce else ""
    return '{\n  "entitlement": "%s",\n  "location": "{{tkGate}}"%s\n}' % (entitlement, nonce_line)


def pay_requests(tc, prefix, lines, body_items, keep):
    """Order and pay (mock SUCCESS) for the gate cases; `keep` sets variables from the answer."""
    return [
        req(f"{tc} 准备: 创建待支付订单", "POST", "/orders", body=body_items,
            test=rf"""
pm.test('返回状态码 200', function () {{ pm.response.to.have.status(200); }});
const o = pm.response.json();
const total = checkNewOrder(o, {json.dumps(lines)});
pm.collectionVariables.set('{prefix}OrderId', o.order_id);
pm.collectionVariables.set('{prefix}Total', total);
pm.collectionVariables.set('{prefix}TxnId', newTxnId('{tc.replace("TC-TKT-", "T")}'));
"""),
        req(f"{tc} 准备: 支付成功通知 → 发票", "POST", "/payments/notify", auth=None,
            body=notify_body(f"{prefix}OrderId", f"{prefix}TxnId", "SUCCESS", "{{%sTotal}}" % prefix),
            test=rf"""
pm.test('返回状态码 200', function () {{ pm.response.to.have.status(200); }});
const a = pm.response.json();
checkProcessed(a, num('{prefix}OrderId'), {json.dumps(lines)});
function codeOf(productId) {{
    return a.tickets_issued.find(function (t) {{ return t.product_id === productId; }}).ticket_code;
}}
{keep}
"""),
    ]


gate = folder("Module 4 票券核销、二维码与签名 (ticket-gate)",
              "CONTRACT Tickets: 工作人员核销 (nonce 重试与拒绝), 二维码 (PNG / SVG), 签名票码与租户公钥, "
              "operator 核销记录。TC-TKT-001..018。每次运行使用新票券和唯一的闸机名 (tkGate)。", pay_requests(
    "TC-TKT-001", "tk", [[101, 1], [102, 1]],
    '{\n  "items": [\n    {"product_id": 101, "quantity": 1},\n    {"product_id": 102, "quantity": 1}\n  ]\n}',
    "pm.collectionVariables.set('tkPassCode', codeOf(101));\n"
    "pm.collectionVariables.set('tkAirportCode', codeOf(102));\n"
    "pm.collectionVariables.set('tkGate', pm.variables.replaceIn('Newman-Gate-{{$timestamp}}-{{$randomInt}}{{$randomInt}}'));") + [
    req("TC-TKT-001 工作人员核销一项权益 (metro, 带 nonce)", "POST", "/tickets/{{tkPassCode}}/redeem", auth="staff",
        body=redeem_body("metro", "newman-scan-1"),
        desc="CONTRACT: POST /tickets/{code}/redeem (staff token) → 200, redemption 与 uses_left。一次核销只用掉该权益的一次。",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const a = pm.response.json();
checkRedeemAnswer(a, v('tkPassCode'), 'metro', 0, 'ACTIVE', false);
saveJson('tkFirstScan', a.redemption);
ticketAs(v('tkPassCode'), pm.variables.get('userToken'), function (t) {
    pm.test('只扣减 metro: metro 0, bus 1, ferry 1', function () {
        pm.expect(usesLeftOf(t)).to.eql({ metro: 0, bus: 1, ferry: 1 });
    });
});
"""),
    req("TC-TKT-002 相同 nonce 重试 → 重放首次核销", "POST", "/tickets/{{tkPassCode}}/redeem", auth="staff",
        body=redeem_body("metro", "newman-scan-1"),
        desc="闸机网络重试: 同一票券、同一 nonce、同一权益与地点 → 200, replayed = true, 与首次相同的 redemption; 不再扣减。",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const a = pm.response.json();
checkRedeemAnswer(a, v('tkPassCode'), 'metro', 0, 'ACTIVE', true);
pm.test('与首次核销是同一条记录 (id, redeemed_at, staff 相同)', function () {
    pm.expect(a.redemption).to.eql(loadJson('tkFirstScan'));
});
ticketAs(v('tkPassCode'), pm.variables.get('userToken'), function (t) {
    pm.test('重试不重复扣减: 仍只有 1 次核销, metro 0, bus 1, ferry 1', function () {
        pm.expect(t.redemptions).to.have.lengthOf(1);
        pm.expect(usesLeftOf(t)).to.eql({ metro: 0, bus: 1, ferry: 1 });
    });
});
"""),
    req("TC-TKT-003 同一 nonce 用于另一次核销 → 409 nonce_reused", "POST", "/tickets/{{tkPassCode}}/redeem",
        auth="staff", body=redeem_body("bus", "newman-scan-1"),
        desc="nonce 已用于 metro 的核销, 再用于 bus: 拒绝, 不扣减 bus; 拒绝也被记录。",
        test=expect_error(409, "nonce_reused") + r"""
ticketAs(v('tkPassCode'), pm.variables.get('staffToken'), function (t) {
    pm.test('bus 未被扣减 (uses_left 1)', function () { pm.expect(usesLeftOf(t).bus).to.equal(1); });
});
"""),
    req("TC-TKT-004 已用完的权益 (新 nonce) → 409 entitlement_used_up", "POST", "/tickets/{{tkPassCode}}/redeem",
        auth="staff", body=redeem_body("metro", "newman-scan-2"),
        test=expect_error(409, "entitlement_used_up")),
    req("TC-TKT-005 持有人查看票券: 权益余量与核销记录", "GET", "/tickets/{{tkPassCode}}",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const t = pm.response.json();
pm.test('status = ACTIVE, order_id = 原订单', function () {
    pm.expect(t.ticket_code).to.equal(v('tkPassCode'));
    pm.expect(t.status).to.equal('ACTIVE');
    pm.expect(t.order_id).to.equal(num('tkOrderId'));
});
pm.test('entitlements: metro 0/1, bus 1/1, ferry 1/1', function () {
    pm.expect(usesLeftOf(t)).to.eql({ metro: 0, bus: 1, ferry: 1 });
    t.entitlements.forEach(function (e) { pm.expect(e.uses_total, e.code + '.uses_total').to.equal(1); });
});
pm.test('redemptions 只列出被接受的核销 (拒绝不在其中): 即 TC-TKT-001 的那一条', function () {
    pm.expect(t.redemptions).to.eql([loadJson('tkFirstScan')]);
});
pm.test('payment: mock, transaction_id = gateway_txn_id, paid_at 为 RFC 3339', function () {
    pm.expect(t.payment.gateway).to.equal('mock');
    pm.expect(t.payment.transaction_id).to.equal(v('tkTxnId'));
    pm.expect(t.payment.paid_at).to.match(RFC3339);
});
"""),
    req("TC-TKT-006 核销 bus (无 nonce)", "POST", "/tickets/{{tkPassCode}}/redeem", auth="staff",
        body=redeem_body("bus"),
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
checkRedeemAnswer(pm.response.json(), v('tkPassCode'), 'bus', 0, 'ACTIVE', false);
"""),
    req("TC-TKT-006 核销最后一项 ferry → 票券 REDEEMED", "POST", "/tickets/{{tkPassCode}}/redeem", auth="staff",
        body=redeem_body("ferry"),
        desc="全部权益用完时 ticket_status = REDEEMED。",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
checkRedeemAnswer(pm.response.json(), v('tkPassCode'), 'ferry', 0, 'REDEEMED', false);
ticketAs(v('tkPassCode'), pm.variables.get('staffToken'), function (t) {
    pm.test('票券 status = REDEEMED, 核销记录按时间先后: metro, bus, ferry', function () {
        pm.expect(t.status).to.equal('REDEEMED');
        pm.expect(t.redemptions.map(function (r) { return r.entitlement; })).to.eql(['metro', 'bus', 'ferry']);
        pm.expect(usesLeftOf(t)).to.eql({ metro: 0, bus: 0, ferry: 0 });
    });
});
"""),
    req("TC-TKT-007 票券没有该权益 → 404 entitlement_not_found", "POST", "/tickets/{{tkAirportCode}}/redeem",
        auth="staff", body=redeem_body("metro"),
        desc="机场快线单程票 (102) 只有 airport 权益。",
        test=expect_error(404, "entitlement_not_found") + r"""
ticketAs(v('tkAirportCode'), pm.variables.get('staffToken'), function (t) {
    pm.test('airport 未被扣减', function () { pm.expect(usesLeftOf(t)).to.eql({ airport: 1 }); });
});
"""),
    req("TC-TKT-008 未知票券 → 404 ticket_not_found", "POST", f"/tickets/{UNKNOWN_TICKET}/redeem", auth="staff",
        body=redeem_body("metro"), test=expect_error(404, "ticket_not_found")),
    req("TC-TKT-009 客户 token 核销 → 403 wrong_role", "POST", "/tickets/{{tkAirportCode}}/redeem",
        body=redeem_body("airport"), test=expect_error(403, "wrong_role")),
    req("TC-TKT-009 无 token 核销 → 401", "POST", "/tickets/{{tkAirportCode}}/redeem", auth=None,
        body=redeem_body("airport"), test=expect_error(401, "unauthorized")),
    req("TC-TKT-010 核销请求体非法 (entitlement 含大写与符号) → 422", "POST", "/tickets/{{tkAirportCode}}/redeem",
        auth="staff", body=redeem_body("METRO!"), test=expect_error(422, "validation_error") + r"""
ticketAs(v('tkAirportCode'), pm.variables.get('staffToken'), function (t) {
    pm.test('被拒绝的请求 (401/403/422) 没有用掉 airport', function () {
        pm.expect(usesLeftOf(t)).to.eql({ airport: 1 });
        pm.expect(t.redemptions).to.be.empty;
    });
});
"""),
] + pay_requests(
    "TC-TKT-011", "tkVoid", [[101, 1]], ORDER_101x1,
    "pm.collectionVariables.set('tkVoidCode', codeOf(101));") + [
    req("TC-TKT-011 准备: operator 退款 → 票券作废", "POST", "/admin/tenants/{{tenant}}/orders/{{tkVoidOrderId}}/refund",
        auth="admin",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
ticketAs(v('tkVoidCode'), pm.variables.get('staffToken'), function (t) {
    pm.test('票券 status = VOID', function () { pm.expect(t.status).to.equal('VOID'); });
});
"""),
    req("TC-TKT-011 已退款 (作废) 的票券 → 409 ticket_void", "POST", "/tickets/{{tkVoidCode}}/redeem", auth="staff",
        body=redeem_body("metro", "newman-void-1"), test=expect_error(409, "ticket_void") + r"""
ticketAs(v('tkVoidCode'), pm.variables.get('staffToken'), function (t) {
    pm.test('作废票券未被核销: metro 仍为 1, 无核销记录', function () {
        pm.expect(usesLeftOf(t).metro).to.equal(1);
        pm.expect(t.redemptions).to.be.empty;
    });
});
"""),
    req("TC-TKT-012 二维码 PNG (默认格式, 持有人)", "GET", "/tickets/{{tkAirportCode}}/qr",
        desc="CONTRACT: GET /tickets/{code}/qr (owner) → 二维码图像, 默认 PNG。",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
pm.test('Content-Type = image/png, Cache-Control = no-store', function () {
    pm.expect(pm.response.headers.get('Content-Type')).to.equal('image/png');
    pm.expect(pm.response.headers.get('Cache-Control')).to.equal('no-store');
});
const png = pm.response.stream;
pm.test('PNG 文件签名 89 50 4E 47 0D 0A 1A 0A, 首块为 IHDR', function () {
    pm.expect(png.slice(0, 8).toString('hex')).to.equal('89504e470d0a1a0a');
    pm.expect(png.slice(12, 16).toString('ascii')).to.equal('IHDR');
});
function be32(at) { return ((png[at] << 24) >>> 0) + (png[at + 1] << 16) + (png[at + 2] << 8) + png[at + 3]; }
pm.test('正方形图像, 尺寸为完整 QR 码 (8 px 模块, 4 模块静区)', function () {
    pm.expect(be32(16), 'width = height').to.equal(be32(20));
    pm.collectionVariables.set('tkQrModules', qrSide(be32(16)));
});
"""),
    req("TC-TKT-013 二维码 SVG (?format=svg)", "GET", "/tickets/{{tkAirportCode}}/qr", query=[("format", "svg")],
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
pm.test('Content-Type = image/svg+xml, Cache-Control = no-store', function () {
    pm.expect(pm.response.headers.get('Content-Type')).to.equal('image/svg+xml');
    pm.expect(pm.response.headers.get('Cache-Control')).to.equal('no-store');
});
const svg = pm.response.text();
const root = svg.match(/<svg\b[^>]*>/);
pm.test('SVG 文档: <svg xmlns="http://www.w3.org/2000/svg" ...> ... </svg>', function () {
    pm.expect(root, 'root element').to.not.equal(null);
    pm.expect(root[0]).to.include('xmlns="http://www.w3.org/2000/svg"');
    pm.expect(svg.trim()).to.match(/<\/svg>$/);
});
pm.test('与 PNG 相同的 QR 码尺寸 (同一内容)', function () {
    const w = Number(root[0].match(/\bwidth="(\d+)"/)[1]);
    const h = Number(root[0].match(/\bheight="(\d+)"/)[1]);
    pm.expect(w, 'width = height').to.equal(h);
    pm.expect(qrSide(w)).to.equal(num('tkQrModules'));
});
pm.collectionVariables.set('tkQrSvg', svg);
"""),
    req("TC-TKT-013 二维码 SVG (Accept: image/svg+xml) 与 ?format=svg 相同", "GET", "/tickets/{{tkAirportCode}}/qr",
        accept="image/svg+xml, */*;q=0.1",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
pm.test('Content-Type = image/svg+xml, 内容与 ?format=svg 完全相同', function () {
    pm.expect(pm.response.headers.get('Content-Type')).to.equal('image/svg+xml');
    pm.expect(pm.response.text()).to.equal(v('tkQrSvg'));
});
"""),
    req("TC-TKT-013 ?format=png 优先于 Accept: image/svg+xml", "GET", "/tickets/{{tkAirportCode}}/qr",
        query=[("format", "png")], accept="image/svg+xml",
        test=r"""
pm.test('返回状态码 200, Content-Type = image/png', function () {
    pm.response.to.have.status(200);
    pm.expect(pm.response.headers.get('Content-Type')).to.equal('image/png');
});
"""),
    req("TC-TKT-014 签名票码 (?format=txt): <ticket_code>.<signature>", "GET", "/tickets/{{tkAirportCode}}/qr",
        query=[("format", "txt")],
        desc="二维码承载的内容: 票码 + '.' + Ed25519 签名 (base32, 无填充), 签名覆盖 '<tenant>/<ticket_code>'。"
             "Postman sandbox 没有 Ed25519, 这里校验格式、确定性与归属; 验签见 tests/ticket/test_qr.py。",
        test=r"""
pm.test('返回状态码 200, Content-Type = text/plain', function () {
    pm.response.to.have.status(200);
    pm.expect(pm.response.headers.get('Content-Type')).to.match(/^text\/plain/);
});
const payload = pm.response.text();
const parts = payload.split('.');
pm.test('payload = 本票 ticket_code + "." + 103 个 base32 字符 (64 字节签名)', function () {
    pm.expect(parts, payload).to.have.lengthOf(2);
    pm.expect(parts[0]).to.equal(v('tkAirportCode'));
    pm.expect(parts[0]).to.match(TICKET_CODE);
    pm.expect(parts[1]).to.match(/^[A-Z2-7]{103}$/);
});
pm.test('只含 QR 字母数字模式的字符 (0-9 A-Z - .)', function () {
    pm.expect(payload).to.match(/^[0-9A-Z.-]+$/);
});
pm.collectionVariables.set('tkSignedCode', payload);
const other = { url: baseUrl + '/tickets/' + v('tkPassCode') + '/qr?format=txt', method: 'GET',
                header: [{ key: 'X-Tenant-ID', value: tenant }, { key: 'Authorization', value: 'Bearer ' + pm.variables.get('userToken') }] };
pm.sendRequest(other, function (err, res) {
    pm.test('另一张票的签名不同', function () {
        pm.expect(err).to.equal(null);
        pm.expect(res.code).to.equal(200);
        const p = res.text().split('.');
        pm.expect(p[0]).to.equal(v('tkPassCode'));
        pm.expect(p[1]).to.match(/^[A-Z2-7]{103}$/);
        pm.expect(p[1]).to.not.equal(parts[1]);
    });
});
"""),
    req("TC-TKT-014 工作人员取得相同的签名票码 (签名确定)", "GET", "/tickets/{{tkAirportCode}}/qr", auth="staff",
        query=[("format", "txt")],
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
pm.test('与持有人取得的 payload 完全相同 (Ed25519 签名确定, 密钥未变)', function () {
    pm.expect(pm.response.text()).to.equal(v('tkSignedCode'));
});
"""),
    req("TC-TKT-015 二维码: 其他客户 → 404, 无 token → 401, 未知格式 → 422", "GET", "/tickets/{{tkAirportCode}}/qr",
        auth="{{tkStrangerToken}}",
        desc="准备: operator 创建一个新客户 (每次运行一个)。票券只对持有人和本租户工作人员可见。",
        pre=r"""
const admin = pm.variables.get('adminToken');
call('POST', '/admin/tenants/' + tenant + '/users', admin, { name: 'Newman Stranger', role: 'customer' }, function (err, res, u) {
    pm.test('[operator] 创建客户 → 200, 返回 token', function () {
        pm.expect(err).to.equal(null);
        pm.expect(res.code, JSON.stringify(u)).to.equal(200);
        pm.expect(u.token).to.be.a('string').and.not.empty;
    });
    pm.collectionVariables.set('tkStrangerToken', u.token);
});
""",
        test=expect_error(404, "ticket_not_found") + r"""
call('GET', '/tickets/' + v('tkAirportCode') + '/qr', null, undefined, function (err, res, json) {
    pm.test('无 token → 401 unauthorized', function () {
        pm.expect(res.code).to.equal(401);
        pm.expect(json.code).to.equal('unauthorized');
    });
});
call('GET', '/tickets/' + v('tkAirportCode') + '/qr?format=gif', pm.variables.get('userToken'), undefined, function (err, res, json) {
    pm.test('?format=gif → 422 validation_error', function () {
        pm.expect(res.code).to.equal(422);
        pm.expect(json.code).to.equal('validation_error');
    });
});
call('GET', '/tickets/' + UNKNOWN_TICKET + '/qr', pm.variables.get('userToken'), undefined, function (err, res, json) {
    pm.test('未知票券 → 404 ticket_not_found', function () {
        pm.expect(res.code).to.equal(404);
        pm.expect(json.code).to.equal('ticket_not_found');
    });
});
"""),
    req("TC-TKT-016 租户公钥 (无需认证)", "GET", "/tenants/{{tenant}}/ticket-key", auth=None, tenant=None,
        desc="CONTRACT/OpenAPI: GET /tenants/{slug}/ticket-key → 闸机离线验签用的 Ed25519 公钥 (raw base64url 与 PEM)。",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const k = pm.response.json();
pm.test('tenant = ' + tenant + ', algorithm = Ed25519, 说明 payload 格式与签名内容', function () {
    pm.expect(k.tenant).to.equal(tenant);
    pm.expect(k.algorithm).to.equal('Ed25519');
    pm.expect(k.payload_format).to.equal('<ticket_code>.<signature>');
    pm.expect(k.signed_message).to.equal('<tenant_slug>/<ticket_code>');
    pm.expect(k.signature_encoding).to.include('base32');
});
pm.test('public_key: 32 字节, base64url 无填充 (43 字符)', function () {
    pm.expect(k.public_key).to.match(/^[A-Za-z0-9_-]{43}$/);
});
pm.test('public_key_pem 是同一把公钥 (SubjectPublicKeyInfo: 302a300506032b6570032100 + 32 字节)', function () {
    const pem = k.public_key_pem.trim();
    pm.expect(pem).to.match(/^-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+\/=\n]+\n-----END PUBLIC KEY-----$/);
    const der = Buffer.from(pem.split('\n').slice(1, -1).join(''), 'base64').toString('hex');
    const raw = Buffer.from(k.public_key.replace(/-/g, '+').replace(/_/g, '/') + '=', 'base64').toString('hex');
    pm.expect(raw).to.have.lengthOf(64);
    pm.expect(der).to.equal('302a300506032b6570032100' + raw);
});
pm.collectionVariables.set('tkPublicKey', k.public_key);
"""),
    req("TC-TKT-016 公钥稳定 (再次获取相同), 未知租户 → 404", "GET", "/tenants/{{tenant}}/ticket-key", auth=None, tenant=None,
        test=r"""
pm.test('返回状态码 200, 与上次相同的 public_key', function () {
    pm.response.to.have.status(200);
    pm.expect(pm.response.json().public_key).to.equal(v('tkPublicKey'));
});
pm.sendRequest({ url: baseUrl + '/tenants/nosuchtenant/ticket-key', method: 'GET' }, function (err, res) {
    pm.test('GET /tenants/nosuchtenant/ticket-key → 404 tenant_not_found', function () {
        pm.expect(err).to.equal(null);
        pm.expect(res.code).to.equal(404);
        pm.expect(res.json().code).to.equal('tenant_not_found');
    });
});
"""),
    req("TC-TKT-017 operator 核销记录: 本次闸机的全部扫描, 最新在前", "GET", "/admin/tenants/{{tenant}}/redemptions",
        auth="admin", query=[("location", "{{tkGate}}")],
        desc="CONTRACT/OpenAPI: GET /admin/tenants/{slug}/redemptions → 接受与拒绝的扫描, 最新在前。"
             "重试重放不新增记录; 401/403/422 的请求不被记录。",
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
const list = pm.response.json().redemptions;
pm.test('8 次扫描, 最新在前: ticket_void, ticket_not_found, entitlement_not_found, ferry, bus, entitlement_used_up, nonce_reused, metro', function () {
    pm.expect(list.map(scanLabel)).to.eql(['ticket_void', 'ticket_not_found', 'entitlement_not_found', 'ferry', 'bus',
                                           'entitlement_used_up', 'nonce_reused', 'metro']);
    const times = list.map(function (s) { return Date.parse(s.redeemed_at); });
    pm.expect(times.slice().sort(function (a, b) { return b - a; }), 'redeemed_at non-increasing').to.eql(times);
});
pm.test('每条记录: location, staff = ' + GATE_STAFF + ', redeemed_at 为 RFC 3339', function () {
    list.forEach(function (s) {
        pm.expect(s.location).to.equal(v('tkGate'));
        pm.expect(s.staff.name).to.equal(GATE_STAFF);
        pm.expect(s.redeemed_at).to.match(RFC3339);
    });
});
const first = loadJson('tkFirstScan');
pm.test('被接受的 metro 核销: 同一 id 与时间, 可追溯到票券、订单与商品, uses_left 0, nonce', function () {
    const s = list[7];
    pm.expect(s.id).to.equal(first.id);
    pm.expect(s.redeemed_at).to.equal(first.redeemed_at);
    pm.expect(s.staff).to.eql(first.staff);
    pm.expect(s).to.include({ ticket_code: v('tkPassCode'), order_id: num('tkOrderId'), product_id: 101,
                              entitlement: 'metro', accepted: true, reason: null, uses_left: 0, nonce: 'newman-scan-1' });
});
pm.test('拒绝记录: nonce_reused 保留 nonce 与所请求的权益 (bus), 无 uses_left', function () {
    pm.expect(list[6]).to.include({ ticket_code: v('tkPassCode'), order_id: num('tkOrderId'), product_id: 101,
                                    entitlement: 'bus', accepted: false, reason: 'nonce_reused', uses_left: null, nonce: 'newman-scan-1' });
});
pm.test('拒绝记录: 未知票券无订单与商品', function () {
    pm.expect(list[1]).to.include({ ticket_code: UNKNOWN_TICKET, order_id: null, product_id: null,
                                    accepted: false, reason: 'ticket_not_found', nonce: null });
});
pm.test('拒绝记录: 作废票券, 订单 = 已退款订单', function () {
    pm.expect(list[0]).to.include({ ticket_code: v('tkVoidCode'), order_id: num('tkVoidOrderId'), product_id: 101,
                                    accepted: false, reason: 'ticket_void', nonce: 'newman-void-1' });
});
"""),
    req("TC-TKT-017 operator 核销记录筛选: accepted, product_id, limit", "GET", "/admin/tenants/{{tenant}}/redemptions",
        auth="admin", query=[("location", "{{tkGate}}"), ("accepted", "false")],
        test=r"""
pm.test('返回状态码 200', function () { pm.response.to.have.status(200); });
pm.test('accepted=false: 5 次拒绝, 最新在前', function () {
    const list = pm.response.json().redemptions;
    pm.expect(list.map(scanLabel)).to.eql(['ticket_void', 'ticket_not_found', 'entitlement_not_found',
                                           'entitlement_used_up', 'nonce_reused']);
    list.forEach(function (s) { pm.expect(s.accepted).to.equal(false); });
});
scansAt('accepted=true', function (list) {
    pm.test('accepted=true: ferry, bus, metro (重放未新增记录)', function () {
        pm.expect(list.map(scanLabel)).to.eql(['ferry', 'bus', 'metro']);
    });
});
scansAt('product_id=102', function (list) {
    pm.test('product_id=102: 只有机场快线票的 entitlement_not_found', function () {
        pm.expect(list.map(scanLabel)).to.eql(['entitlement_not_found']);
        pm.expect(list[0].ticket_code).to.equal(v('tkAirportCode'));
    });
});
scansAt('limit=2', function (list) {
    pm.test('limit=2: 最新的 2 条', function () {
        pm.expect(list.map(scanLabel)).to.eql(['ticket_void', 'ticket_not_found']);
    });
});
"""),
    req("TC-TKT-018 operator 核销记录: staff token 不是 operator token → 401", "GET", "/admin/tenants/{{tenant}}/redemptions",
        auth="staff", test=expect_error(401, "unauthorized")),
    req("TC-TKT-018 operator 核销记录: since 不带时区 → 422", "GET", "/admin/tenants/{{tenant}}/redemptions",
        auth="admin", query=[("since", "2026-01-01T00:00:00")], test=expect_error(422, "validation_error")),
    req("TC-TKT-018 operator 核销记录: 未知租户 → 404", "GET", "/admin/tenants/nosuchtenant/redemptions",
        auth="admin", test=expect_error(404, "tenant_not_found")),
])

COLLECTION_TEST = r"""
// CONTRACT (Conventions): every error answer is JSON with at least `error` (for people) and `code` (for programs).
if (pm.response.code >= 400) {
    pm.test('[contract] 错误应答含 error 与 code', function () {
        const b = pm.response.json();
        pm.expect(b.error, 'error').to.be.a('string').and.not.empty;
        pm.expect(b.code, 'code').to.be.a('string').and.not.empty;
    });
}
"""

VARIABLES = [
    ("unknownOrderId", "987654321", "an order id no run ever reaches"),
]

collection = {
    "info": {
        "_postman_id": "0b6f3f1a-5d0e-4c1b-9a57-6e2d8c4f7a10",
        "name": "ticketing — US-004 payment notify & ticket issuance",
        "description": (
            "Postman collection for the ticketing service (CONTRACT.md), following the QA runbook "
            "US-004 (支付通知与票券发放): TC-PAY-001..009 and the QA E2E checklist TC-ORDER-101, "
            "TC-PAY-101..104, 201..204, 301, 302; the ticket gate (CONTRACT Tickets) TC-TKT-001..018: staff redemption "
            "with nonce retries and refusals, QR codes (PNG, SVG), the signed ticket code and the tenant's public "
            "ticket key, and the operator's list of scans; plus negative checks.\n\n"
            "Run: `bash scripts/newman.sh` (throwaway server, fresh SQLite, fault injection on), or against "
            "`make run`: `npx newman run postman/ticketing.postman_collection.json -e postman/local.postman_environment.json`. "
            "The atomicity drills (TC-PAY-009, TC-PAY-301) need the server started with `TICKETING_FAULT_INJECTION=1`, "
            "and `adminToken` must be the server's `TICKETING_ADMIN_TOKEN`.\n\n"
            "Every id (orders, gateway_txn_id with a random suffix, tickets) is created by the run itself and kept in "
            "collection variables, so the collection can run repeatedly against the same database. Stock checks compare "
            "the operator's product counters (`stock`, `reserved`) just before and just after each step, so they assume "
            "nobody else buys products 101/102 during the run."
        ),
        "schema": "https://schema.getpostman.com/json/collection/v2.1.0/collection.json",
    },
    "item": [setup, module1, module2, module3, round1, round2, round3, gate, negative],
    "event": [event("test", COLLECTION_TEST)],
    "variable": [],
}

# Declare every collection variable the scripts set (documentation; values are filled at run time).
names = set()
for code in ALL_SCRIPTS:
    names.update(re.findall(r"(?:collectionVariables\.set|saveJson|snapshot)\('([A-Za-z0-9]+)'", code))
fixed = {k for k, _, _ in VARIABLES}
collection["variable"] = (
    [{"key": k, "value": val, "type": "string", "description": d} for k, val, d in VARIABLES]
    + [{"key": k, "value": "", "type": "string"} for k in sorted(names - fixed)]
)

# Syntax-check every script with node.
checker = "const s = require('fs').readFileSync(0, 'utf8'); for (const c of JSON.parse(s)) { new Function(c); }"
subprocess.run(["node", "-e", checker], input=json.dumps(ALL_SCRIPTS), text=True, check=True)

with open(OUT, "w", encoding="utf-8") as fh:
    json.dump(collection, fh, ensure_ascii=False, indent=2)
    fh.write("\n")

count = 0


def walk(items):
    global count
    for it in items:
        if "item" in it:
            walk(it["item"])
        else:
            count += 1


walk(collection["item"])
print(f"wrote {OUT}: {count} requests, {len(ALL_SCRIPTS)} scripts, {len(collection['variable'])} variables")
