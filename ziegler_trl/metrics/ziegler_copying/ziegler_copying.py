"""How much summaries copy their sources (Ziegler et al. 2019, Figure 5 and Table 7), as an `evaluate` module.

Values are `ziegler_trl.evaluation.copy_table`: the mean over (source, summary) pairs of `copy_stats`.
"""

import datasets
import evaluate

from ziegler_trl.evaluation import copy_table

_CITATION = """\
@article{ziegler2019finetuning,
  title={Fine-Tuning Language Models from Human Preferences},
  author={Ziegler, Daniel M. and Stiennon, Nisan and Wu, Jeffrey and Brown, Tom B. and Radford, Alec and
          Amodei, Dario and Christiano, Paul and Irving, Geoffrey},
  journal={arXiv preprint arXiv:1909.08593},
  year={2019}
}
"""

_DESCRIPTION = """\
The copying analysis of Ziegler et al. (2019): the fraction of a summary's n-grams (n = 1..4, within sentences, case
and punctuation ignored) that never occur in its source, the fraction of its sentences not found in the source,
whether every sentence is copied whole, whether it starts with the source's first 3 words, and how many of its
3-grams repeat. With a task ("tldr" or "cnndm"), also how often sources open with a preamble a good summary skips,
and first-3-words copying with and without one (Table 7).
"""

_KWARGS_DESCRIPTION = """
Args:
    sources: list of str, the texts summarised (posts or articles).
    summaries: list of str, one summary per source.
    task: optional "tldr" or "cnndm", for the preamble statistics.
Returns:
    n, novel_1gram .. novel_4gram, novel_sentences, copied_whole, first3_copied, repeated_3gram (means over pairs;
    booleans as rates; pairs without an n-gram of that length left out), and with a task preamble_rate,
    first3_copied_preamble, first3_copied_no_preamble.
Examples:
    >>> import evaluate
    >>> from ziegler_trl.metrics import metric_path
    >>> copying = evaluate.load(metric_path("ziegler_copying"))
    >>> copying.compute(sources=["The cat sat on the mat. It slept."], summaries=["The cat sat on the mat."])["copied_whole"]
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ZieglerCopying(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"sources": datasets.Value("string"), "summaries": datasets.Value("string")}),
            reference_urls=["https://arxiv.org/abs/1909.08593"],
        )

    def _compute(self, sources, summaries, task=None):
        return copy_table(sources, summaries, task)
