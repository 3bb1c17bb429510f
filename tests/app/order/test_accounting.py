"""Hand-checked position arithmetic: every figure below was worked out on paper."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from app.order.accounting import PositionState, Side, apply_fill, fee_for, round_to_step

FLAT = PositionState()


def test_opening_a_long_pays_price_and_fee() -> None:
    effect = apply_fill(FLAT, side=Side.BUY, quantity=D("2"), price=D("100"), fee=D("0.2"))
    assert effect.position == PositionState(D("2"), D("100"), D("-0.2"))
    assert effect.realized == D("-0.2")
    assert effect.cash_change == D("-200.2")


def test_adding_averages_the_entry_price() -> None:
    one = apply_fill(FLAT, side=Side.BUY, quantity=D("1"), price=D("100"), fee=D("0"))
    two = apply_fill(one.position, side=Side.BUY, quantity=D("3"), price=D("120"), fee=D("0"))
    # (1 x 100 + 3 x 120) / 4 = 460 / 4 = 115
    assert two.position.quantity == D("4")
    assert two.position.average_price == D("115")


def test_partial_close_realises_only_the_closed_part() -> None:
    long = PositionState(D("4"), D("115"), D("0"))
    effect = apply_fill(long, side=Side.SELL, quantity=D("1.5"), price=D("130"), fee=D("0.39"))
    # 1.5 x (130 - 115) = 22.5, less the 0.39 fee = 22.11; the rest keeps its entry price.
    assert effect.realized == D("22.11")
    assert effect.position == PositionState(D("2.5"), D("115"), D("22.11"))
    assert effect.cash_change == D("194.61")  # 1.5 x 130 - 0.39


def test_closing_to_flat_resets_the_entry() -> None:
    long = PositionState(D("2"), D("100"), D("-0.2"))
    effect = apply_fill(long, side=Side.SELL, quantity=D("2"), price=D("90"), fee=D("0.18"))
    # 2 x (90 - 100) = -20, less 0.18 = -20.18; total -0.2 - 20.18 = -20.38.
    assert effect.position == PositionState(D("0"), D("0"), D("-20.38"))


def test_a_flip_closes_then_opens_at_the_fill_price() -> None:
    long = PositionState(D("1"), D("50"), D("0"))
    effect = apply_fill(long, side=Side.SELL, quantity=D("3"), price=D("60"), fee=D("0"))
    assert effect.realized == D("10")
    assert effect.position == PositionState(D("-2"), D("60"), D("10"))
    back = apply_fill(effect.position, side=Side.BUY, quantity=D("2"), price=D("55"), fee=D("0"))
    # The short gains 2 x (60 - 55) = 10 as the price falls.
    assert back.position == PositionState(D("0"), D("0"), D("20"))


def test_unrealised_pnl_and_market_value_at_a_mark() -> None:
    long = PositionState(D("2.5"), D("115"), D("22.11"))
    assert long.unrealized_pnl(D("110")) == D("-12.5")
    assert long.market_value(D("110")) == D("275.0")
    short = PositionState(D("-2"), D("60"), D("0"))
    assert short.unrealized_pnl(D("50")) == D("20")


def test_a_repeating_average_is_rounded_once_to_the_stored_precision() -> None:
    one = apply_fill(FLAT, side=Side.BUY, quantity=D("1"), price=D("100"), fee=D("0"))
    two = apply_fill(one.position, side=Side.BUY, quantity=D("2"), price=D("101"), fee=D("0"))
    assert two.position.average_price == D("100.666666666666666667")


@pytest.mark.parametrize(
    ("quantity", "price", "fee"),
    [(D("0"), D("1"), D("0")), (D("1"), D("0"), D("0")), (D("1"), D("1"), D("-1"))],
)
def test_impossible_fills_are_refused(quantity: D, price: D, fee: D) -> None:
    with pytest.raises(ValueError, match="positive"):
        apply_fill(FLAT, side=Side.BUY, quantity=quantity, price=price, fee=fee)


def test_fees_and_grid_rounding() -> None:
    assert fee_for(D("194.99"), D("0.001")) == D("0.19499000")
    assert round_to_step(D("100.005"), D("0.01"), up=True) == D("100.01")
    assert round_to_step(D("100.005"), D("0.01"), up=False) == D("100.00")
    assert round_to_step(D("0.123456"), D("0.0001"), up=False) == D("0.1234")
