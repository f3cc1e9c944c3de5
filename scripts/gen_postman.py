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

def _chunks():
    """Split the helper libraries into top-level `const NAME` / `function NAME` chunks."""
    chunks = {}
    order = []
    for lib in (LIB_CORE, LIB_HTTP, LIB_ORDER, LIB_TICKET, LIB_NOTIFY):
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
        desc=None, query=None, content_type="application/json"):
    headers = []
    if tenant is not None:
        headers.append({"key": "X-Tenant-ID", "value": tenant})
    if auth is not None:
        token = TOKENS.get(auth, auth)
        headers.append({"key": "Authorization", "value": f"Bearer {token}"})
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
            "TC-PAY-101..104, 201..204, 301, 302, plus negative checks.\n\n"
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
    "item": [setup, module1, module2, module3, round1, round2, round3, negative],
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
