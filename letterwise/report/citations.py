"""The works the report cites, written out once. Where a detail (venue, identifier) was not
certain it is left out rather than guessed."""

from __future__ import annotations

REFERENCES = (
    "Ben Allal, L., Lozhkov, A., Bakouch, E., et al. (2025). SmolLM2: When Smol Goes Big — "
    "Data-Centric Training of a Small Language Model. arXiv:2502.02737.",
    "Qwen Team (Yang, A., et al.) (2025). Qwen3 Technical Report. arXiv:2505.09388.",
    "Hu, E. J., Shen, Y., Wallis, P., Allen-Zhu, Z., Li, Y., Wang, S., Wang, L., Chen, W. "
    "(2022). LoRA: Low-Rank Adaptation of Large Language Models. ICLR 2022. arXiv:2106.09685.",
    "Wilson, E. B. (1927). Probable Inference, the Law of Succession, and Statistical "
    "Inference. Journal of the American Statistical Association, 22(158), 209–212.",
    "McNemar, Q. (1947). Note on the sampling error of the difference between correlated "
    "proportions or percentages. Psychometrika, 12(2), 153–157.",
    "Efron, B. (1979). Bootstrap Methods: Another Look at the Jackknife. The Annals of "
    "Statistics, 7(1), 1–26.",
    "Zhao, Z., Wallace, E., Feng, S., Klein, D., Singh, S. (2021). Calibrate Before Use: "
    "Improving Few-Shot Performance of Language Models. ICML 2021. arXiv:2102.09690.",
    "Kaushal, A., Mahowald, K. (2022). What do tokens know about their characters and how do "
    "they know it? NAACL 2022.",
    "Itzhak, I., Levy, O. (2022). Models In a Spelling Bee: Language Models Implicitly Learn "
    "the Character Composition of Tokens. NAACL 2022.",
    "Edman, L., Schmid, H., Fraser, A. (2024). CUTE: Measuring LLMs' Understanding of Their "
    "Tokens. EMNLP 2024.",
    "CharBench: Evaluating the Role of Tokenization in Character-Level Tasks (2025). arXiv "
    "preprint.",
    "Xu, N., Ma, X. (2024). LLM The Genius Paradox: A Linguistic and Math Expert's Struggle "
    "with Simple Word-based Counting Problems. arXiv preprint.",
)
