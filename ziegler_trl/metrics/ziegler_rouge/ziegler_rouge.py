"""ROUGE as Ziegler et al. (2019) report it, and the lead-3 baseline, as an `evaluate` module.

Scores are `ziegler_trl.evaluation.rouge`: ROUGE-1.5.5 with Porter stemming (Google's `rouge-score`), F-measures x 100
averaged over documents, texts split into sentences first so that `rougeLsum` is the summary-level ROUGE-L of the
paper's "R-L" column.
"""

import datasets
import evaluate

from ziegler_trl.evaluation import lead3, rouge

_CITATION = """\
@article{ziegler2019finetuning,
  title={Fine-Tuning Language Models from Human Preferences},
  author={Ziegler, Daniel M. and Stiennon, Nisan and Wu, Jeffrey and Brown, Tom B. and Radford, Alec and
          Amodei, Dario and Christiano, Paul and Irving, Geoffrey},
  journal={arXiv preprint arXiv:1909.08593},
  year={2019}
}
@inproceedings{lin2004rouge,
  title={ROUGE: A Package for Automatic Evaluation of Summaries},
  author={Lin, Chin-Yew},
  booktitle={Text Summarization Branches Out},
  year={2004}
}
"""

_DESCRIPTION = """\
ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum F-measures x 100, averaged over documents, with Porter stemming, as the
summarization tables of Ziegler et al. (2019) report them. Config "lead3" scores the lead-3 baseline: the first
three sentences of each article against its reference.
"""

_KWARGS_DESCRIPTION = """
Args (config "default"):
    predictions: list of str, the summaries to score.
    references: list of str, one reference summary per prediction.
Args (config "lead3"):
    articles: list of str, the source articles; each one's first three sentences are its prediction.
    references: list of str, one reference summary per article.
Both configs:
    bootstrap_samples: int, 0 (default) or the number of bootstrap resamples of documents for a confidence interval.
    confidence: float, the interval's level (default 0.95).
    seed: int, the bootstrap's seed (default 0).
Returns:
    rouge1, rouge2, rougeL, rougeLsum: mean F-measure x 100; with bootstrap_samples > 0 also <key>_low / <key>_high.
Examples:
    >>> import evaluate
    >>> from ziegler_trl.metrics import metric_path
    >>> rouge = evaluate.load(metric_path("ziegler_rouge"))
    >>> rouge.compute(predictions=["the cat sat on the mat"], references=["the cat sat on the mat"])["rouge1"]
    100.0
"""

CONFIGS = ("default", "lead3")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ZieglerRouge(evaluate.Metric):
    def _info(self):
        if self.config_name not in CONFIGS:
            raise ValueError(f"ziegler_rouge has configs {list(CONFIGS)}, not {self.config_name!r}")
        first = "articles" if self.config_name == "lead3" else "predictions"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({first: datasets.Value("string"), "references": datasets.Value("string")}),
            reference_urls=["https://arxiv.org/abs/1909.08593", "https://github.com/google-research/google-research/tree/master/rouge"],
        )

    def _compute(self, references, predictions=None, articles=None, bootstrap_samples=0, confidence=0.95, seed=0):
        if articles is not None:
            predictions = [lead3(article) for article in articles]
        return rouge(predictions, references, bootstrap_samples=bootstrap_samples, confidence=confidence, seed=seed)
