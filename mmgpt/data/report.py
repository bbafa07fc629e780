"""Data quality report: per-dataset counts, skip reasons, response lengths and the share of short answers.

The paper (section 4.2) found that data whose responses are one or two words teaches the model to answer every
instruction in one or two words; `SHORT_SHARE_WARNING` flags such datasets.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from transformers import PreTrainedTokenizerBase

from mmgpt.data.dataset import ReadResult
from mmgpt.data.sources import Skips
from mmgpt.data.templates import SampleTooLong, encode_conversation, supervised_spans

SHORT_WORDS = 2
SHORT_SHARE_WARNING = 0.30


@dataclass
class DatasetReport:
    """Statistics of one dataset spec."""

    name: str
    records_read: int
    kept: int
    skipped: dict[str, int]
    images_missing: int
    skip_examples: dict[str, list[str]] = field(default_factory=dict)
    response_words: list[int] = field(default_factory=list)
    response_tokens: list[int] = field(default_factory=list)

    @property
    def short_share(self) -> float:
        """Share of responses with at most two words."""
        if not self.response_words:
            return 0.0
        return sum(w <= SHORT_WORDS for w in self.response_words) / len(self.response_words)

    @property
    def warn_short(self) -> bool:
        return self.short_share >= SHORT_SHARE_WARNING

    def row(self) -> dict:
        """Summary numbers as a dict (for tables and JSON)."""
        mean = lambda xs: round(statistics.fmean(xs), 1) if xs else 0.0  # noqa: E731
        median = lambda xs: statistics.median(xs) if xs else 0  # noqa: E731
        return {
            "dataset": self.name,
            "read": self.records_read,
            "kept": self.kept,
            "skipped": sum(self.skipped.values()),
            "skip_reasons": self.skipped,
            "images_missing": self.images_missing,
            "mean_words": mean(self.response_words),
            "median_words": median(self.response_words),
            "mean_tokens": mean(self.response_tokens),
            "median_tokens": median(self.response_tokens),
            "short_share": round(self.short_share, 3),
        }


def unreadable_image(path: Path) -> str | None:
    """Why an image file cannot be used, from its header alone (empty, not an image, too many pixels), or None.

    Only the header is read, so that a large dataset is checked quickly; a file cut short after a valid header is
    found when training decodes it.
    """
    try:
        with Image.open(path) as image:
            image.size  # noqa: B018 (the header is parsed by open; nothing is decoded)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as err:
        return str(err) if str(path) in str(err) else f"{path}: {err}"
    return None


def build_report(result: ReadResult, tokenizer: PreTrainedTokenizerBase, max_length: int) -> DatasetReport:
    """Render every kept sample once and measure its responses (words and tokens, EOS excluded).

    Samples that training would skip are counted as such: `too_long` when the first round does not fit, and
    `corrupt_image` when an image the rendered rounds use is not a readable image file.
    """
    skips = Skips()
    skips.merge(result.skips)
    checked: dict[Path, str | None] = {}
    kept, words, tokens = 0, [], []
    for sample in result.samples:
        where = sample.where or f"{sample.dataset}:{sample.id}"
        try:
            encoded = encode_conversation(sample.conversation, tokenizer, max_length)
        except SampleTooLong as err:
            skips.add("too_long", where, str(err))
            continue
        for path in sample.images[: encoded.num_images]:
            if path not in checked:
                checked[path] = unreadable_image(path)
        problem = next((checked[p] for p in sample.images[: encoded.num_images] if checked[p]), None)
        if problem:
            skips.add("corrupt_image", where, problem)
            continue
        kept += 1
        for turn, span in zip(sample.conversation.turns, supervised_spans(encoded), strict=False):
            words.append(len((turn.assistant or "").split()))
            tokens.append(len(span) - 1)
    return DatasetReport(
        name=result.spec.label,
        records_read=result.records_read,
        kept=kept,
        skipped=dict(skips.counts),
        images_missing=skips.counts.get("missing_image", 0),
        skip_examples={k: list(v) for k, v in skips.examples.items()},
        response_words=words,
        response_tokens=tokens,
    )


def format_table(reports: list[DatasetReport]) -> str:
    """A fixed-width text table of the reports, with a warning line per short-answer dataset."""
    header = f"{'dataset':<22}{'read':>8}{'kept':>8}{'skipped':>9}{'img miss':>9}{'words':>8}{'med':>6}{'tokens':>8}{'<=2 words':>11}"
    lines = [header, "-" * len(header)]
    for r in reports:
        row = r.row()
        lines.append(
            f"{r.name[:21]:<22}{row['read']:>8}{row['kept']:>8}{row['skipped']:>9}{row['images_missing']:>9}"
            f"{row['mean_words']:>8}{row['median_words']:>6}{row['mean_tokens']:>8}{row['short_share'] * 100:>10.0f}%"
        )
    for r in reports:
        if r.skipped:
            lines.append(
                f"  {r.name}: skipped " + ", ".join(f"{k}={v}" for k, v in sorted(r.skipped.items()))
            )
            # the first few locations per reason, so the records can be found and fixed
            for reason in sorted(r.skip_examples):
                lines += [f"    {example}" for example in r.skip_examples[reason]]
    for r in reports:
        if r.warn_short:
            lines.append(
                f"WARNING: {r.name}: {r.short_share:.0%} of responses have at most {SHORT_WORDS} words; such data "
                "teaches the model to answer everything in a word or two (MultiModal-GPT paper, section 4.2)"
            )
    return "\n".join(lines)


def plot_lengths(reports: list[DatasetReport], path: str) -> None:
    """Save a histogram of response lengths (words) per dataset to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in reports if r.response_words]
    fig, axes = plt.subplots(len(shown) or 1, 1, figsize=(7, 1.8 * max(len(shown), 1)), squeeze=False)
    for ax, r in zip(axes[:, 0], shown, strict=False):
        ax.hist(
            r.response_words,
            bins=range(0, max(r.response_words) + 2),
            color="tab:red" if r.warn_short else "tab:blue",
        )
        ax.set_title(
            f"{r.name}: {len(r.response_words)} responses, {r.short_share:.0%} <= 2 words", fontsize=9
        )
        ax.tick_params(labelsize=8)
    axes[-1, 0].set_xlabel("response length (words)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
