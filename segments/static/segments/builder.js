/* The segment builder: edits a condition tree (see segments/conditions.py) without showing JSON.

   Reads its configuration (attributes, operators per data type, labels, endpoints, validation errors of the last
   save) from the JSON script #segment-builder-config, keeps the tree in the hidden textarea the form submits, and
   after each edit (debounced) POSTs the tree to the admin count endpoint, showing "1,234 customers" or the
   validation message on the node it points at. Vanilla JS, no dependencies. */
(function () {
    "use strict";

    var DEBOUNCE_MS = 350;
    var uid = 0;

    function el(tag, attrs, children) {
        var node = document.createElement(tag);
        Object.keys(attrs || {}).forEach(function (key) {
            var value = attrs[key];
            if (value === undefined || value === null || value === false) return;
            if (key === "text") node.textContent = value;
            else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), value);
            else node.setAttribute(key, value === true ? "" : value);
        });
        (children || []).forEach(function (child) {
            if (child) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
        });
        return node;
    }

    function isGroup(node) { return node && Array.isArray(node.children); }

    function cookie(name) {
        var match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
        return match ? decodeURIComponent(match[1]) : "";
    }

    function Builder(root) {
        this.root = root;
        this.config = JSON.parse(document.getElementById("segment-builder-config").textContent);
        this.attributes = {};
        this.config.config.attributes.forEach(function (a) { this.attributes[a.id] = a; }, this);
        this.field = root.querySelector("textarea.seg-builder-value");
        this.treeEl = root.querySelector("[data-tree]");
        this.countEl = root.querySelector("[data-count-value]");
        this.countBox = root.querySelector("[data-count]");
        this.countError = root.querySelector("[data-count-error]");
        this.suggestions = {};
        this.timer = null;
        this.sequence = 0;
        this.wrapped = false;
        this.tree = this.load();
        this.errors = this.config.errors.map(function (e) {
            return { path: this.wrapped ? e.path.replace(/^conditions/, "conditions.children[0]") : e.path,
                     message: e.message };
        }, this);
        this.render();
        this.showErrors(this.errors);
        this.changed(true);
        var form = this.field.form;
        if (form) form.addEventListener("submit", this.sync.bind(this));
    }

    Builder.prototype.load = function () {
        var tree;
        try { tree = JSON.parse(this.field.value || "null"); } catch (e) { tree = null; }
        if (!tree || typeof tree !== "object" || Array.isArray(tree) || !Object.keys(tree).length) {
            tree = { operator: "and", children: [] };
        }
        if (!isGroup(tree)) {
            this.wrapped = true;
            tree = { operator: "and", children: [tree] };
        }
        return tree;
    };

    // Replace the whole tree (e.g. from a test or a future "load template" action) and redraw it.
    Builder.prototype.setTree = function (tree) {
        this.field.value = JSON.stringify(tree);
        this.wrapped = false;
        this.tree = this.load();
        this.render();
        this.changed(true);
    };

    Builder.prototype.sync = function () {
        this.field.value = JSON.stringify(this.serialise(this.tree));
    };

    Builder.prototype.serialise = function (node) {
        var out;
        if (isGroup(node)) {
            out = { operator: node.operator === "or" ? "or" : "and",
                    children: node.children.map(this.serialise, this) };
        } else {
            out = { attribute: node.attribute || "", operator: node.operator || "" };
            if (node.field) out.field = node.field;
            if (this.config.config.no_value.indexOf(node.operator) < 0 && node.value !== undefined) {
                out.value = node.value;
            }
        }
        if (node.negate) out.negate = true;
        return out;
    };

    // --- editing ------------------------------------------------------------------------------------------------

    Builder.prototype.changed = function (immediate) {
        this.sync();
        var self = this;
        clearTimeout(this.timer);
        this.countBox.classList.add("seg-count-busy");
        this.timer = setTimeout(function () { self.count(); }, immediate ? 0 : DEBOUNCE_MS);
    };

    Builder.prototype.rerender = function () {
        this.render();
        this.changed();
    };

    Builder.prototype.count = function () {
        var self = this;
        // One count in flight at a time (a count over millions of customers takes a second or two): edits made
        // meanwhile are counted once it answers, so typing never piles up queries on the server.
        if (this.inflight) { this.dirty = true; return; }
        this.inflight = true;
        var done = function () {
            self.inflight = false;
            if (self.dirty) { self.dirty = false; self.count(); return true; }
            return false;
        };
        var sequence = ++this.sequence;
        var token = (document.querySelector("input[name=csrfmiddlewaretoken]") || {}).value || cookie("csrftoken");
        fetch(this.config.count_url, {
            method: "POST",
            credentials: "same-origin",
            headers: { "Content-Type": "application/json", "X-CSRFToken": token },
            body: JSON.stringify({ conditions: this.serialise(this.tree) })
        }).then(function (response) {
            return response.json().catch(function () { return { status: "error", message: "HTTP " + response.status }; });
        }).then(function (body) {
            if (done() || sequence !== self.sequence) return;
            self.countBox.classList.remove("seg-count-busy");
            if (body.status === "ok") {
                var n = body.customers_count;
                self.countEl.textContent = n.toLocaleString("en-US") + (n === 1 ? " customer" : " customers");
                self.countBox.classList.remove("seg-count-invalid");
                self.countError.hidden = true;
                self.showErrors([]);
            } else {
                self.countEl.textContent = "—";
                self.countBox.classList.add("seg-count-invalid");
                self.countError.hidden = false;
                self.countError.textContent = self.describe(body);
                self.showErrors(body.path ? [{ path: body.path, message: body.message }] : []);
            }
        }).catch(function () {
            if (self.inflight && done()) return;
            if (sequence !== self.sequence) return;
            self.countBox.classList.remove("seg-count-busy");
            self.countEl.textContent = "—";
            self.countError.hidden = false;
            self.countError.textContent = "The count is not available right now.";
        });
    };

    Builder.prototype.describe = function (error) {
        var target = error.path ? this.treeEl.querySelector('[data-path="' + nodePath(error.path) + '"]') : null;
        var where = target ? target.getAttribute("data-label") : "";
        return (where ? where + ": " : "") + (friendly(error).message || "invalid conditions");
    };

    function nodePath(path) {
        // "conditions.children[1].children[0].value" -> the node "conditions.children[1].children[0]"
        var match = path.match(/^conditions(\.children\[\d+\])*/);
        return match ? match[0] : "conditions";
    }

    function friendly(error) {
        // a new condition whose attribute is not picked yet
        if (/\.attribute$/.test(error.path || "") && /unknown attribute ''/.test(error.message || "")) {
            return { path: error.path, message: "Pick an attribute." };
        }
        return error;
    }

    Builder.prototype.showErrors = function (errors) {
        errors = errors.map(friendly);
        this.treeEl.querySelectorAll(".seg-invalid").forEach(function (node) { node.classList.remove("seg-invalid"); });
        this.treeEl.querySelectorAll("[data-node-error]").forEach(function (node) {
            node.textContent = ""; node.hidden = true;
        });
        errors.forEach(function (error) {
            var node = this.treeEl.querySelector('[data-path="' + nodePath(error.path) + '"]');
            if (!node) return;
            node.classList.add("seg-invalid");
            var box = node.querySelector(":scope > [data-node-error]");
            if (box) { box.textContent = error.message; box.hidden = false; }
        }, this);
    };

    // --- drawing ------------------------------------------------------------------------------------------------

    Builder.prototype.render = function () {
        this.treeEl.textContent = "";
        this.treeEl.appendChild(this.renderGroup(this.tree, null, "conditions", 0));
    };

    Builder.prototype.notButton = function (node) {
        var self = this;
        return el("button", {
            type: "button", "class": "seg-not" + (node.negate ? " seg-not-on" : ""), "data-action": "negate",
            "aria-pressed": node.negate ? "true" : "false", title: "NOT: match the customers this does not match",
            text: "NOT", onclick: function () { node.negate = !node.negate; self.rerender(); }
        });
    };

    Builder.prototype.removeButton = function (parent, node, label) {
        var self = this;
        return el("button", {
            type: "button", "class": "seg-remove", "data-action": "remove", title: "Remove this " + label,
            "aria-label": "Remove this " + label, text: "×",
            onclick: function () {
                parent.children.splice(parent.children.indexOf(node), 1);
                self.rerender();
            }
        });
    };

    Builder.prototype.renderGroup = function (group, parent, path, depth) {
        var self = this;
        var select = el("select", { "class": "seg-group-operator", "data-role": "group-operator",
                                    "aria-label": "Combine with", onchange: function () {
            group.operator = select.value; self.rerender();
        } }, [
            el("option", { value: "and", text: "ALL of these (AND)", selected: group.operator !== "or" }),
            el("option", { value: "or", text: "ANY of these (OR)", selected: group.operator === "or" })
        ]);
        var head = el("div", { "class": "seg-group-head" }, [
            this.notButton(group), el("span", { text: "Customers matching" }), select,
            parent ? this.removeButton(parent, group, "group") : null
        ]);
        var list = el("div", { "class": "seg-children" });
        group.children.forEach(function (child, index) {
            if (index > 0) {
                list.appendChild(el("div", { "class": "seg-connector", "aria-hidden": "true",
                                             text: group.operator === "or" ? "OR" : "AND" }));
            }
            var childPath = path + ".children[" + index + "]";
            list.appendChild(isGroup(child) ? this.renderGroup(child, group, childPath, depth + 1)
                                            : this.renderCondition(child, group, childPath));
        }, this);
        if (!group.children.length) {
            list.appendChild(el("div", { "class": "seg-empty", text: group.operator === "or"
                ? "An empty ANY group matches nobody: add a condition."
                : (parent ? "An empty group matches everybody: add a condition." : "No conditions yet: every customer matches. Add a condition.") }));
        }
        var actions = el("div", { "class": "seg-group-actions" }, [
            el("button", { type: "button", "class": "seg-add", "data-action": "add-condition", text: "+ Condition",
                           onclick: function () {
                group.children.push({ attribute: "", operator: "" });
                self.rerender();
                var inputs = self.treeEl.querySelectorAll('[data-path="' + path + '"] > .seg-children > .seg-condition:last-child .seg-attr-input');
                if (inputs.length) inputs[inputs.length - 1].focus();
            } }),
            el("button", { type: "button", "class": "seg-add", "data-action": "add-group", text: "+ Group",
                           onclick: function () {
                group.children.push({ operator: group.operator === "or" ? "and" : "or", children: [
                    { attribute: "", operator: "" }] });
                self.rerender();
            } })
        ]);
        return el("div", { "class": "seg-group seg-depth-" + (depth % 4) + (group.negate ? " seg-negated" : ""),
                           "data-path": path, "data-label": parent ? "Group" : "Conditions" }, [
            head, list, actions, el("div", { "class": "seg-node-error", "data-node-error": true, hidden: true })
        ]);
    };

    Builder.prototype.renderCondition = function (node, parent, path) {
        var self = this;
        var attribute = this.attributes[node.attribute];
        // A compound attribute's condition may name one of its fields: then the field's type decides the operators.
        var field = attribute && node.field ? (attribute.fields || []).filter(function (f) {
            return f.id === node.field; })[0] : null;
        var subject = field ? { id: attribute.id, name: attribute.name, type: field.type, unit: "", field: field.id }
                            : attribute;
        var type = subject ? subject.type : null;
        var operators = type ? this.config.config.operators[type] : [];
        var labels = type ? this.config.config.operator_labels[type] : {};
        var operator = el("select", { "class": "seg-operator", "data-role": "operator", "aria-label": "Operator",
                                      disabled: !attribute, onchange: function () {
            var before = node.operator;
            node.operator = operator.value;
            if (self.valueKind(before) !== self.valueKind(node.operator)) delete node.value;
            self.rerender();
        } });
        if (!attribute) operator.appendChild(el("option", { value: "", text: "pick an attribute first" }));
        if (node.operator && operators.indexOf(node.operator) < 0) {
            operator.appendChild(el("option", { value: node.operator, text: node.operator, selected: true }));
        }
        operators.forEach(function (op) {
            operator.appendChild(el("option", { value: op, text: labels[op] || op, selected: op === node.operator }));
        });
        var label = attribute ? attribute.name : (node.attribute || "Condition");
        return el("div", { "class": "seg-condition" + (node.negate ? " seg-negated" : ""), "data-path": path,
                           "data-label": label }, [
            el("div", { "class": "seg-condition-row" }, [
                this.notButton(node),
                this.attributePicker(node),
                attribute && attribute.type === "compound" ? this.fieldPicker(node, attribute) : null,
                operator,
                el("div", { "class": "seg-value" }, this.valueInputs(node, subject)),
                this.removeButton(parent, node, "condition")
            ]),
            el("div", { "class": "seg-node-error", "data-node-error": true, hidden: true })
        ]);
    };

    Builder.prototype.fieldPicker = function (node, attribute) {
        var self = this;
        var select = el("select", { "class": "seg-field", "data-role": "field", "aria-label": "Field",
                                    onchange: function () {
            if (select.value) node.field = select.value; else delete node.field;
            var field = (attribute.fields || []).filter(function (f) { return f.id === select.value; })[0];
            node.operator = self.config.config.operators[field ? field.type : attribute.type][0];
            delete node.value;
            self.rerender();
        } });
        select.appendChild(el("option", { value: "", text: "any value", selected: !node.field }));
        (attribute.fields || []).forEach(function (f) {
            select.appendChild(el("option", { value: f.id, text: f.name, selected: f.id === node.field }));
        });
        return select;
    };

    Builder.prototype.valueKind = function (op) {
        // single (default), list, range, days or none: segments.conditions.OPERATOR_VALUES
        return this.config.config.operator_values[op] || "single";
    };

    Builder.prototype.attributePicker = function (node) {
        var self = this;
        var attribute = this.attributes[node.attribute];
        var listId = "seg-attr-list-" + (++uid);
        var input = el("input", {
            type: "search", "class": "seg-attr-input", "data-role": "attribute", autocomplete: "off",
            placeholder: "Search attributes…", "aria-label": "Attribute", role: "combobox",
            "aria-controls": listId, "aria-expanded": "false",
            value: attribute ? attribute.name : (node.attribute || "")
        });
        var list = el("ul", { "class": "seg-attr-list", id: listId, role: "listbox", hidden: true });
        var active = -1;
        var items = [];
        function choose(a) {
            var same = attribute && attribute.id === a.id;
            var sameType = same || (attribute && attribute.type === a.type && a.type !== "compound");
            node.attribute = a.id;
            if (!same) delete node.field;
            var ops = self.config.config.operators[a.type];
            if (!sameType || ops.indexOf(node.operator) < 0) {
                node.operator = ops[0];
                delete node.value;
            }
            list.hidden = true;
            self.rerender();
            var fresh = self.treeEl.querySelector('[data-path="' + input.closest("[data-path]").getAttribute("data-path") + '"] .seg-value input');
            if (fresh) fresh.focus();
        }
        function highlight(index) {
            items.forEach(function (item, i) { item.classList.toggle("seg-active", i === index); });
            active = index;
            if (items[index]) items[index].scrollIntoView({ block: "nearest" });
        }
        function fill() {
            var query = input.value.trim().toLowerCase();
            if (attribute && input.value === attribute.name) query = "";
            list.textContent = "";
            items = [];
            self.config.config.attributes.forEach(function (a) {
                var haystack = (a.name + " " + a.id + " " + a.type).toLowerCase();
                if (query && haystack.indexOf(query) < 0) return;
                var item = el("li", { role: "option", "class": "seg-attr-option", "data-attribute": a.id,
                                      title: a.description || a.id,
                                      onmousedown: function (event) { event.preventDefault(); choose(a); } }, [
                    el("span", { "class": "seg-attr-name", text: a.name }),
                    el("span", { "class": "seg-attr-id", text: a.id }),
                    el("span", { "class": "seg-type seg-type-" + a.type,
                                 text: self.config.config.type_labels[a.type] || a.type })
                ]);
                items.push(item);
                list.appendChild(item);
            });
            if (!items.length) list.appendChild(el("li", { "class": "seg-attr-none", text: "No attribute matches" }));
            list.hidden = false;
            input.setAttribute("aria-expanded", "true");
            highlight(items.length === 1 ? 0 : -1);
        }
        input.addEventListener("focus", function () { input.select(); fill(); });
        input.addEventListener("input", fill);
        input.addEventListener("blur", function () {
            list.hidden = true;
            input.setAttribute("aria-expanded", "false");
            input.value = attribute ? attribute.name : (node.attribute || "");
        });
        input.addEventListener("keydown", function (event) {
            if (event.key === "ArrowDown") { event.preventDefault(); highlight(Math.min(items.length - 1, active + 1)); }
            else if (event.key === "ArrowUp") { event.preventDefault(); highlight(Math.max(0, active - 1)); }
            else if (event.key === "Enter") {
                event.preventDefault();
                var pick = items[active >= 0 ? active : 0];
                if (pick) choose(self.attributes[pick.getAttribute("data-attribute")]);
            } else if (event.key === "Escape") { list.hidden = true; }
        });
        return el("div", { "class": "seg-attr" + (attribute ? "" : " seg-attr-missing") }, [
            input, list,
            attribute ? el("span", { "class": "seg-type seg-type-" + attribute.type,
                                     text: self.config.config.type_labels[attribute.type] || attribute.type }) : null
        ]);
    };

    // --- values -------------------------------------------------------------------------------------------------

    function inputType(type) {
        if (type === "int" || type === "float") return "number";
        if (type === "date") return "date";
        if (type === "datetime") return "datetime-local";
        return "text";
    }

    function parse(text, type) {
        if (text === "") return undefined;
        if (type === "int" || type === "float") {
            var number = Number(text);
            return isNaN(number) ? text : number;
        }
        if (type === "datetime" && /^\d{4}-\d\d-\d\dT\d\d:\d\d$/.test(text)) return text + ":00";
        return text;
    }

    function show(value, type) {
        if (value === undefined || value === null) return "";
        if (type === "datetime" && typeof value === "string") {
            return value.replace(/Z$/, "").replace(/\.\d+$/, "").replace(/\+00:00$/, "").slice(0, 19);
        }
        return String(value);
    }

    Builder.prototype.suggest = function (attributeId, datalist) {
        var self = this;
        var fillList = function (body) {
            datalist.textContent = "";
            (body.values || []).forEach(function (row) {
                datalist.appendChild(el("option", { value: String(row.value), label: (body.approximate ? "≈ " : "") +
                                                    row.count.toLocaleString("en-US") + " customers" }));
            });
        };
        if (this.suggestions[attributeId]) { fillList(this.suggestions[attributeId]); return; }
        fetch(this.config.values_url + "?attribute=" + encodeURIComponent(attributeId), { credentials: "same-origin" })
            .then(function (r) { return r.ok ? r.json() : { values: [] }; })
            .then(function (body) { self.suggestions[attributeId] = body; fillList(body); })
            .catch(function () {});
    };

    Builder.prototype.textInput = function (attribute, value, onValue, extra) {
        var self = this;
        var type = attribute.type;
        var listId = "seg-values-" + (++uid);
        var datalist = el("datalist", { id: listId, "data-suggestions": attribute.id });
        var attrs = { type: inputType(type), "class": "seg-input", value: show(value, type), list: listId,
                      "aria-label": (extra && extra.label) || "Value", "data-role": (extra && extra.role) || "value" };
        if (type === "int") attrs.step = "1";
        if (type === "float") attrs.step = "any";
        if (type === "datetime") attrs.step = "1";
        if (extra && extra.placeholder) attrs.placeholder = extra.placeholder;
        var input = el("input", attrs);
        if (!attribute.field) {  // (a compound attribute's suggestions are whole objects, not a field's values)
            input.addEventListener("focus", function () { self.suggest(attribute.id, datalist); }, { once: true });
        }
        if (onValue) {
            input.addEventListener("input", function () { onValue(parse(input.value, type)); self.changed(); });
        }
        return [input, datalist];
    };

    Builder.prototype.valueInputs = function (node, attribute) {
        var self = this;
        if (!attribute || !node.operator) return [];
        var kind = this.valueKind(node.operator);
        if (kind === "none") return [];
        if (kind === "days") {
            var days = el("input", { type: "number", min: "0", step: "1", "class": "seg-input seg-days",
                                     value: show(node.value), "aria-label": "Number of days", "data-role": "value" });
            days.addEventListener("input", function () {
                node.value = days.value === "" ? undefined : Number(days.value);
                self.changed();
            });
            return [days, el("span", { "class": "seg-unit", text: "days" })];
        }
        if (kind === "range") {
            // The bounds as typed are kept on the node (serialise() leaves them out): with one bound missing the
            // value is [that bound], which a redraw (NOT, + Condition) would otherwise put in the "From" box.
            var typed = node.rangeTyped;
            var pair = typed && typed.value === node.value ? typed.pair
                : Array.isArray(node.value) ? node.value.slice(0, 2) : [undefined, undefined];
            var update = function (index) {
                return function (v) {
                    pair[index] = v;
                    // a missing bound is left out, so the validator says "'between' needs two values"
                    var given = pair.filter(function (x) { return x !== undefined; });
                    node.value = given.length ? given : undefined;
                    node.rangeTyped = { pair: pair, value: node.value };
                };
            };
            return [].concat(
                this.textInput(attribute, pair[0], update(0), { label: "From", role: "value-low" }),
                [el("span", { "class": "seg-unit", text: "and" })],
                this.textInput(attribute, pair[1], update(1), { label: "To", role: "value-high" })
            );
        }
        if (kind === "list") return [this.listInput(node, attribute)];
        var inputs = this.textInput(attribute, node.value, function (v) { node.value = v; });
        if (attribute.unit) inputs.push(el("span", { "class": "seg-unit", text: attribute.unit }));
        if (attribute.type === "datetime") inputs.push(el("span", { "class": "seg-unit", text: "UTC" }));
        return inputs;
    };

    Builder.prototype.listInput = function (node, attribute) {
        var self = this;
        var values = Array.isArray(node.value) ? node.value.slice() : [];
        var chips = el("span", { "class": "seg-chips" });
        var store = function () { node.value = values.length ? values.slice() : undefined; self.changed(); };
        var draw = function () {
            chips.textContent = "";
            values.forEach(function (value, index) {
                chips.appendChild(el("span", { "class": "seg-chip", "data-value": String(value) }, [
                    String(value),
                    el("button", { type: "button", "class": "seg-chip-remove", "aria-label": "Remove " + value,
                                   text: "×", onclick: function () { values.splice(index, 1); draw(); store(); } })
                ]));
            });
        };
        draw();
        var parts = this.textInput(attribute, "", null, { placeholder: "type a value, Enter to add",
                                                                    role: "value-item" });
        var input = parts[0];
        var add = function () {
            var value = parse(input.value.trim(), attribute.type);
            if (value !== undefined && values.indexOf(value) < 0) { values.push(value); draw(); store(); }
            input.value = "";
        };
        input.addEventListener("keydown", function (event) {
            if (event.key === "Enter" || event.key === ",") { event.preventDefault(); add(); }
        });
        input.addEventListener("change", function () { if (input.value.trim()) add(); });
        return el("span", { "class": "seg-list" }, [chips, input, parts[1]]);
    };

    function start() {
        document.querySelectorAll("[data-segment-builder]").forEach(function (root) {
            if (!root.segmentBuilder) root.segmentBuilder = new Builder(root);
        });
    }

    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
    else start();
})();
