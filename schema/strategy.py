"""Strategy types. Parameters travel as a JSON object keyed by parameter name.

A JSON object is what a front end's form holds anyway (`{fast: 10, slow: 30}`), it needs no
reshaping per kind, and a `BAD_USER_INPUT` error's `field` (`parameters.slow`) points straight
at the form input. Integers are JSON numbers; decimals are read as numbers or strings and always
written as strings, so they round-trip exactly. `strategyKinds` is the schema of those objects.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry
from strawberry.scalars import JSON

from app.strategy import kinds
from app.strategy import service as strategy_service
from app.strategy.kinds import Kind, KindSpec, ParameterSpec, ParameterType
from app.strategy.models import Strategy

strawberry.enum(Kind, name="StrategyKindName", description="A built-in strategy kind")
strawberry.enum(ParameterType, name="ParameterType", description="How a parameter is written")


def _text(value: int | Decimal) -> str:
    return format(value, "f") if isinstance(value, Decimal) else str(value)


@strawberry.type(name="ParameterSpec", description="One parameter of a kind; bounds inclusive.")
class ParameterSpecType:
    name: str
    type: ParameterType
    default: str = strawberry.field(description="As text, so decimals stay exact.")
    minimum: str
    maximum: str
    description: str

    @classmethod
    def from_spec(cls, spec: ParameterSpec) -> ParameterSpecType:
        return cls(
            name=spec.name,
            type=spec.type,
            default=_text(spec.default),
            minimum=_text(spec.minimum),
            maximum=_text(spec.maximum),
            description=spec.description,
        )


@strawberry.type(name="StrategyKind")
class StrategyKindType:
    name: Kind
    description: str
    parameters: list[ParameterSpecType]

    @classmethod
    def from_spec(cls, spec: KindSpec) -> StrategyKindType:
        return cls(
            name=spec.kind,
            description=spec.description,
            parameters=[ParameterSpecType.from_spec(p) for p in kinds.parameter_specs(spec.kind)],
        )


@strawberry.type(name="Strategy")
class StrategyType:
    id: strawberry.ID
    name: str
    kind: Kind
    parameters: JSON = strawberry.field(
        description="Every parameter of the kind: integers as numbers, decimals as strings."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_model(cls, strategy: Strategy) -> StrategyType:
        return cls(
            id=strawberry.ID(str(strategy.id)),
            name=strategy.name,
            kind=strategy_service.kind_of(strategy),
            parameters=JSON(kinds.encode(strategy_service.parameters_of(strategy))),
            created_at=strategy.created_at,
            updated_at=strategy.updated_at,
        )


@strawberry.input
class CreateStrategyInput:
    name: str
    kind: Kind
    parameters: JSON | None = strawberry.field(
        default=None,
        description="An object of parameter name to value; missing ones take their defaults.",
    )


@strawberry.input
class UpdateStrategyInput:
    name: str | None = None
    parameters: JSON | None = strawberry.field(
        default=None,
        description="Merged over the current values: send only what changes; null resets one "
        "parameter to its default.",
    )
