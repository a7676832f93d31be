"""A scripted external buyer that plays MAMS's environment API over HTTP (/env/...), as a trained agent would.

It is the smallest complete client: an `EnvClient` for the six endpoints (standard library JSON over
httpx, no MAMS imports, so it runs anywhere) and an anchoring policy that opens low, raises its
counter each round, and takes the best standing offer when it is good enough or on the closing
turn, walking away when nothing is within budget. Swap `anchoring_policy` for your own model: it
gets the observation dict and returns an action dict.

Usage (a running server and a token from `manage.py create_api_user`):

    .venv/bin/python perf/env_agent.py --url http://127.0.0.1:8000 --token $TOKEN \\
        --task "core-v1/three-sellers/Wireless Mouse" --episodes 5 --max-rounds 4

It prints one row per episode (deal, price, rounds, reward) and the mean reward.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx

Policy = Callable[[dict[str, Any]], dict[str, Any]]
CENT = Decimal("0.01")


class EnvError(RuntimeError):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body.get('detail', body)}")
        self.status = status
        self.body = body


class EnvClient:
    """The environment API over HTTP. Every response body is kept in `bodies` (for audits and tests)."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 180.0) -> None:
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout,
                                 headers={"Authorization": f"Token {token}"})
        self.bodies: list[str] = []

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> EnvClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        r = self.http.request(method, f"/env/{path}", **kwargs)
        self.bodies.append(r.text)
        body = r.json()
        if r.status_code >= 400:
            raise EnvError(r.status_code, body)
        return r.status_code, body

    def health(self) -> dict[str, Any]:
        return self._call("GET", "health")[1]

    def tasks(self, **params: Any) -> list[dict[str, Any]]:
        out, offset = [], 0
        while True:
            page = self._call("GET", "tasks", params={**params, "limit": 500, "offset": offset})[1]
            out += page["results"]
            offset += len(page["results"])
            if not page["next"] or not page["results"]:
                return out

    def reset(self, task: str, **body: Any) -> dict[str, Any]:
        return self._call("POST", "reset", json={"task": task, **body})[1]

    def step(self, episode_id: str, action: dict[str, Any], wait_seconds: float | None = None
             ) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"episode_id": episode_id, "action": action}
        if wait_seconds is not None:
            body["wait_seconds"] = wait_seconds
        return self._call("POST", "step", json=body)

    def state(self, episode_id: str) -> dict[str, Any]:
        return self._call("GET", "state", params={"episode_id": episode_id})[1]

    def score(self, episode_id: str) -> dict[str, Any]:
        return self._call("GET", "score", params={"episode_id": episode_id})[1]


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def anchoring_policy(obs: dict[str, Any], *, open_at: float = 0.2, step: float = 0.2, accept_from_round: int = 3,
                     good_enough: float = 0.5) -> dict[str, Any]:
    """Open at `open_at` of the way from min to max price, raise by `step` a round; accept the best offer once
    it is within `good_enough` of the range, or from round `accept_from_round`, or on the closing turn."""
    legal = obs["legal_actions"]
    if "wait" in legal:
        return {"type": "wait"}
    low, high = Decimal(obs["budget"]["min_price"]), Decimal(obs["budget"]["max_price"])
    offers = sorted((Decimal(p), h) for h, p in obs["standing_offers"].items())
    best = offers[0] if offers and offers[0][0] <= high else None
    late = obs["closing_turn"] or obs["turn"] >= accept_from_round
    if best and "accept" in legal and (late or best[0] <= low + (high - low) * Decimal(str(good_enough))):
        return {"type": "accept", "seller": best[1], "price": str(best[0]),
                "text": f"Deal: {best[1]} at ${best[0]}."}
    if "message" not in legal:
        return {"type": "walk_away", "text": "Nothing here is within my budget. No deal, thank you."}
    counter = _cents(low + (high - low) * Decimal(str(open_at + step * (obs["turn"] - 1))))
    counter = min(counter, high)
    rival = f" {best[1]} is at ${best[0]}." if best else ""
    return {"type": "message", "to": ["all"], "price": str(counter),
            "text": f"I need {obs['item']['quantity']}. Can you do ${counter} each?{rival}"}


def play_episode(client: EnvClient, task: str, *, policy: Policy = anchoring_policy, seed: int = 0,
                 max_rounds: int = 4, wait_seconds: float | None = None, max_steps: int = 100,
                 **reset: Any) -> dict[str, Any]:
    """reset, then step with the policy until done; returns the final step, the score and every step's status."""
    result = client.reset(task, seed=seed, max_rounds=max_rounds, **reset)
    episode_id = result["episode_id"]
    statuses = []
    for _ in range(max_steps):
        if result["done"]:
            break
        code, result = client.step(episode_id, policy(result["observation"]), wait_seconds=wait_seconds)
        statuses.append(code)
    else:
        raise RuntimeError(f"episode {episode_id} did not end in {max_steps} steps")
    return {"episode_id": episode_id, "last": result, "score": client.score(episode_id), "statuses": statuses}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", required=True)
    parser.add_argument("--task", help="a task id; default: list the tasks and stop")
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="the first episode's seed (then +1 each)")
    parser.add_argument("--max-rounds", type=int, default=4)
    parser.add_argument("--sellers", default=None, help='how MAMS plays the sellers, as JSON, e.g. '
                                                         '\'{"strategy": "boulware"}\' (default: the server\'s)')
    parser.add_argument("--name", default="scripted-anchor-v1", help="your agent's name (its fingerprint)")
    args = parser.parse_args(argv)
    with EnvClient(args.url, args.token) as client:
        return _run(client, args)


def _run(client: EnvClient, args: argparse.Namespace) -> int:
    print("health:", json.dumps(client.health()))
    if not args.task:
        for t in client.tasks():
            print(f"{t['id']:<60} {t['item']['quantity']:>3} × ${t['budget']['min_price']}–"
                  f"${t['budget']['max_price']}  {' '.join(t['sellers'])}")
        return 0
    extra: dict[str, Any] = {"agent_name": args.name}
    if args.sellers:
        extra["agents"] = {"seller": json.loads(args.sellers)}
    rewards = []
    print(f"{'seed':>6}  {'deal':<5} {'seller':<16} {'price':>9} {'rounds':>6} {'reward':>7}")
    for i in range(args.episodes):
        s = play_episode(client, args.task, seed=args.seed + i, max_rounds=args.max_rounds, **extra)["score"]
        rewards.append(s["reward"] or 0.0)
        print(f"{s['seed']:>6}  {s['deal']!s:<5} {s['seller'] or '-':<16} {s['price'] or '-':>9} "
              f"{s['rounds']:>6} {s['reward']:>7.3f}")
    print(f"mean reward {sum(rewards) / len(rewards):.3f} over {len(rewards)} episodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
