"""The cost of an operation: how many objects it may return, known before it runs.

The depth limit alone lets `bots(first: 70) { nodes { orders(first: 70) { bot { orders(first:
70) ... } } } }` through: 343,000 objects, seconds of one process's only thread. So every
operation is priced from its document and variables, and one over `TG_MAX_QUERY_COST` is
refused before anything runs, with its cost and the limit in `extensions`. A subscription is
priced per event (what one event's payload may hold).

The rule (docs/architecture.md, "Requests"):

- every object a field may return costs 1; scalars and enums cost nothing of their own;
- a list holds its `first`, `last` or `limit` argument's value (a literal, a variable, or else
  the argument's default in the schema), at most `LARGEST_PAGE`; a connection's `nodes` hold
  the page size of their connection field; any other list counts as `UNSIZED_LIST`;
- a field's cost is multiplied by the sizes of the lists it sits in, so nesting multiplies;
- fragments and inline fragments count where they are spread (every type condition, as if
  all applied); introspection is priced by the same rule.

It is an estimate of the work, not a count of rows: a page can hold fewer, and a list without
a size argument (an order's fills, a bot's positions) is taken to hold `UNSIZED_LIST`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SchemaMetaFieldDef,
    SelectionSetNode,
    TypeMetaFieldDef,
    Undefined,
    ValueNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_list_type,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from app.errors import DomainError
from app.market.service import MAX_CANDLE_PAGE
from app.pagination import MAX_PAGE
from schema.bot import MAX_NESTED
from schema.strawberry_overrides import StrawberrySchema

SIZE_ARGUMENTS = ("first", "last", "limit")
# A size beyond the largest page any field serves is refused by that field when it runs.
LARGEST_PAGE = max(MAX_PAGE, MAX_CANDLE_PAGE, MAX_NESTED)
# What a list with no size argument is taken to hold.
UNSIZED_LIST = 10
# Reported costs stop here: the largest integer every JSON client reads exactly.
MAX_REPORTED = 2**53 - 1


class QueryTooCostly(DomainError):
    code = "QUERY_TOO_COSTLY"

    def __init__(self, *, cost: int, limit: int) -> None:
        shown = min(cost, MAX_REPORTED)
        super().__init__(
            f"this operation may return about {shown} objects, more than the {limit} allowed: "
            "ask for smaller pages or fewer nested lists"
        )
        self.cost = shown
        self.limit = limit

    def details(self) -> dict[str, Any]:
        return {"cost": self.cost, "maxCost": self.limit}


class _Pricing:
    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.variables = dict(variables)
        for definition in operation.variable_definitions or ():
            name = definition.variable.name.value
            if name not in self.variables and isinstance(definition.default_value, IntValueNode):
                self.variables[name] = int(definition.default_value.value)
        # A fragment's cost per (name, page): spreading one many times prices it once.
        self.fragment_costs: dict[tuple[str, int | None], int] = {}
        self.pricing: set[str] = set()

    def selections(
        self, parent: GraphQLNamedType, selection_set: SelectionSetNode, page: int | None
    ) -> int:
        """The cost of one object of type `parent` with `selection_set`; `page` is the size
        its list fields hold when the object is a connection."""
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(parent, selection, page)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = parent if condition is None else self.schema.get_type(condition.name.value)
                if inner is not None:
                    total += self.selections(inner, selection.selection_set, page)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.fragment(selection.name.value, page)
        return total

    def fragment(self, name: str, page: int | None) -> int:
        key = (name, page)
        if key in self.fragment_costs:
            return self.fragment_costs[key]
        definition = self.fragments.get(name)
        if definition is None or name in self.pricing:  # validation refuses both
            return 0
        condition = self.schema.get_type(definition.type_condition.name.value)
        if condition is None:
            return 0
        self.pricing.add(name)
        cost = self.selections(condition, definition.selection_set, page)
        self.pricing.discard(name)
        self.fragment_costs[key] = cost
        return cost

    def field(self, parent: GraphQLNamedType, node: FieldNode, page: int | None) -> int:
        if node.selection_set is None:
            return 0  # a scalar or an enum
        definition = self._definition(parent, node.name.value)
        if definition is None:
            return 0
        size = self._size(definition, node)
        if is_list_type(get_nullable_type(definition.type)):
            count = size if size is not None else page if page is not None else UNSIZED_LIST
            inner_page = None
        else:
            # A connection: one object, whose lists hold its page.
            count, inner_page = 1, size
        named = get_named_type(definition.type)
        return count * (1 + self.selections(named, node.selection_set, inner_page))

    def _definition(self, parent: GraphQLNamedType, name: str) -> GraphQLField | None:
        if name == "__schema" and parent is self.schema.query_type:
            return SchemaMetaFieldDef
        if name == "__type" and parent is self.schema.query_type:
            return TypeMetaFieldDef
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            found: GraphQLField | None = parent.fields.get(name)
            return found
        return None

    def _size(self, definition: GraphQLField, node: FieldNode) -> int | None:
        sizes = [
            self._argument(definition, node, name)
            for name in SIZE_ARGUMENTS
            if name in definition.args
        ]
        known = [size for size in sizes if size is not None]
        return max(known) if known else None

    def _argument(self, definition: GraphQLField, node: FieldNode, name: str) -> int | None:
        given: ValueNode | None = next(
            (a.value for a in node.arguments or () if a.name.value == name), None
        )
        value: object
        if given is None:
            value = definition.args[name].default_value
        elif isinstance(given, VariableNode):
            value = self.variables.get(given.name.value, definition.args[name].default_value)
        elif isinstance(given, IntValueNode):
            value = int(given.value)
        else:
            value = Undefined
        if not isinstance(value, int) or isinstance(value, bool):
            return None  # no size given, or one the field refuses when it runs
        return max(0, min(value, LARGEST_PAGE))


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name is not None and o.name.value == name), None)


def operation_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    *,
    operation_name: str | None = None,
    variables: Mapping[str, Any] | None = None,
) -> int:
    """The cost of the operation `operation_name` names in a valid `document` (for a
    subscription, of one event)."""
    operation = _operation(document, operation_name)
    if operation is None:
        return 0  # execution refuses it: no such operation
    root = schema.get_root_type(operation.operation)
    if root is None:
        return 0
    pricing = _Pricing(schema, document, operation, variables or {})
    return pricing.selections(root, operation.selection_set, None)


class CostMemo:
    """Costs worked out already, by document text, operation and the integers among the
    variables (nothing else changes a cost): clients send the same few documents again and
    again. Shared by every operation, like the parser cache."""

    def __init__(self, maxsize: int = 1024) -> None:
        self.maxsize = maxsize
        self._costs: OrderedDict[Hashable, int] = OrderedDict()

    def cost(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        *,
        query: str | None,
        operation_name: str | None,
        variables: Mapping[str, Any] | None,
    ) -> int:
        if query is None:
            return operation_cost(
                schema, document, operation_name=operation_name, variables=variables
            )
        # A variable that is no integer sizes nothing, whatever its value.
        given = (variables or {}).items()
        sizes = tuple(sorted((k, v if type(v) is int else None) for k, v in given))
        key = (query, operation_name, sizes)
        found = self._costs.get(key)
        if found is not None:
            self._costs.move_to_end(key)
            return found
        found = operation_cost(schema, document, operation_name=operation_name, variables=variables)
        self._costs[key] = found
        if len(self._costs) > self.maxsize:
            self._costs.popitem(last=False)
        return found


class CostLimit(SchemaExtension):
    """Refuse an operation whose cost is over the limit, before it runs."""

    def __init__(self, *, max_cost: int, memo: CostMemo) -> None:
        self.max_cost = max_cost
        self.memo = memo

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        document = ctx.graphql_document
        schema = ctx.schema
        if document is not None and ctx.result is None and isinstance(schema, StrawberrySchema):
            cost = self.memo.cost(
                schema.graphql_schema,
                document,
                query=ctx.query,
                operation_name=ctx.operation_name,
                variables=ctx.variables,
            )
            if cost > self.max_cost:
                refusal = QueryTooCostly(cost=cost, limit=self.max_cost)
                if ctx.operation_type is OperationType.SUBSCRIPTION:
                    # A subscription starts whatever the result says; an error raised here
                    # ends it with this one error (the error formatter adds the code).
                    raise refusal
                # Setting a result skips execution.
                ctx.result = GraphQLExecutionResult(
                    data=None, errors=[GraphQLError(refusal.message, original_error=refusal)]
                )
        yield
