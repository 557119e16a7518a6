"""Hand-written drafts for the planted-error set (evals/faithfulness/make_planted.py builds planted.jsonl).

One draft per pair of related corpus notes, [1] and [2] being the excerpts make_planted.excerpt_of
picks (the section of each note richest in numbers, cut at <= 700 characters, as the Researcher's
notes are). Each draft is written the way a writer writes from notes: every fact PARAPHRASED (not
a lightly reworded copy of a source sentence), numbers as the source gives them (a computed one
marked "(derived)"), an uncited opening sentence that states no fact. Every cited sentence of the
clean draft is supported by the excerpt it cites.

Each draft also names its three planted errors, each one sentence changed:
  wrong_number   the sentence at `at` replaced by `text`: a number that is wrong (a value the
                 source does not give, a number the source gives for something else, or a wrong
                 count written in words)
  wrong_source   the sentence at `at` cited to the other source (`cites`), which does not say it
  uncited_claim  the sentence at `at` replaced by `text`: a fact from the sources restated in the
                 writer's words with no citation

Written on 2026-12-01 before any change to the citation rules was tried on them (issue 14's
second pass); the rules were then tuned on d01-d12 only, and d13-d24 are reported apart as the
held-out half. The support check (third pass) was tuned on another split, by topic groups
(evals/faithfulness/split.py), whose reported half is held out for that check only.
"""
from __future__ import annotations

DRAFTS: list[dict] = [
    {"draft": "d01", "pair": ("grouped-query-attention", "kv-cache-arithmetic"), "sentences": [
        ("This post walks through what grouped-query attention changes in Llama 3.1 8B and what that means "
         "for the KV cache.", []),
        ("In Llama 3.1 8B the key and value projections are only 1024 wide against 4096 for the queries, because "
         "the model keeps 8 KV heads for its 32 query heads.", [1]),
        ("Every KV head therefore serves four query heads, and the cache shrinks fourfold compared with full "
         "multi-head attention.", [1]),
        ("For a batch of 10 sequences at 128K tokens the KV cache comes to about 171.8 GB, more than two 80 GB "
         "A100s can hold, even though the weights take just 16.1 GB.", [2]),
        ("The same model with 32 KV heads, plain MHA, would need 687 GB under that load.", [2]),
        ("Grouped-query attention saves roughly 515 GB there (derived).", [1]),
        ("At batch 50 the figure climbs to 859 GB.", [2]),
    ],
        "wrong_number": {"at": 2, "text": "Every KV head therefore serves eight query heads, and the cache shrinks "
                                          "eightfold compared with full multi-head attention."},
        "wrong_source": {"at": 6, "cites": [1]},
        "uncited_claim": {"at": 2, "text": "Each KV head is shared by four query heads, which makes the cache four "
                                           "times smaller than with multi-head attention."}},
    {"draft": "d02", "pair": ("vllm-pagedattention", "continuous-batching"), "sentences": [
        ("This post covers two memory and scheduling ideas behind modern LLM servers.", []),
        ("Older serving stacks reserved a single contiguous KV buffer per request, sized for the longest output "
         "it might produce.", [1]),
        ("According to the vLLM paper only 20% to 38% of that memory ever held real tokens; the remaining 60% to "
         "80% was lost to over-reservation and fragmentation.", [1]),
        ("Continuous batching, first described in the Orca paper, makes its scheduling decisions after every "
         "single decoding step.", [2]),
        ("Sequences that finish drop out at once and queued requests take their place, so the batch never sits "
         "half empty.", [2]),
        ("Chunked prefill cuts a very long prompt into pieces so that it cannot hold up the next token of every "
         "other request.", [2]),
        ("Combined with vLLM's paged cache, an Anyscale benchmark measured up to 23 times the throughput of "
         "static batching in 2023.", [2]),
    ],
        "wrong_number": {"at": 6, "text": "Combined with vLLM's paged cache, an Anyscale benchmark measured up to 32 "
                                          "times the throughput of static batching in 2023."},
        "wrong_source": {"at": 1, "cites": [2]},
        "uncited_claim": {"at": 5, "text": "Long prompts are usually split into chunks during prefill so that one "
                                           "request does not delay everybody else's next token."}},
    {"draft": "d03", "pair": ("lora-low-rank-adaptation", "qlora-4bit-finetuning"), "sentences": [
        ("Here is what a LoRA adapter for Llama 3.1 8B really costs, in parameters and in money.", []),
        ("A rank-r LoRA pair on a d_out x d_in weight matrix adds r x (d_in + d_out) trainable parameters.", [1]),
        ("At rank 16 on all seven projections, every layer of Llama 3.1 8B gains 1,310,720 parameters, or "
         "41,943,040 across its 32 layers.", [1]),
        ("That is about half a percent of the model, 0.52%, and an adapter file of roughly 160 MB in 16-bit.", [1]),
        ("The k and v adapters are smaller than the q one because grouped-query attention makes those "
         "projections output only 1,024 values.", [1]),
        ("With QLoRA the curriculum fine-tuned the instruct model on 550 question-answer pairs for 3 epochs on a "
         "single A100 80GB.", [2]),
        ("The whole run took 102 steps and cost less than $0.15 at about $1.49 an hour.", [2]),
    ],
        "wrong_number": {"at": 2, "text": "At rank 16 on all seven projections, every layer of Llama 3.1 8B gains "
                                          "1,310,720 parameters, or 41,943,040 across its 40 layers."},
        "wrong_source": {"at": 4, "cites": [2]},
        "uncited_claim": {"at": 3, "text": "Such an adapter is tiny next to the base model: about half a percent of "
                                           "its weights."}},
    {"draft": "d04", "pair": ("lora-rank-sweep", "serving-lora-adapters"), "sentences": [
        ("Picking a LoRA rank and serving many adapters are two sides of the same deployment question.", []),
        ("Teaching a format or a persona is a low-dimensional change, and ranks of 8 or 16 cover it.", [1]),
        ("Dense technical material, full of specific numbers and hardware vocabulary, needs more capacity.", [1]),
        ("On this dataset the sweep found r = 32 to be the practical sweet spot.", [1]),
        ("A lower training loss does not guarantee better generalisation, so a sweep has to be read alongside an "
         "evaluation on held-out prompts.", [1]),
        ("A rank-16 adapter for Llama 3.1 8B weighs 161 MB, tiny beside the 16.1 GB base model.", [2]),
        ("In production one copy of the base weights stays on the GPU and adapters are attached per request.", [2]),
    ],
        "wrong_number": {"at": 3, "text": "On this dataset the sweep found r = 16 to be the practical sweet spot."},
        "wrong_source": {"at": 6, "cites": [1]},
        "uncited_claim": {"at": 4, "text": "Lower training loss is not the same as better generalisation, which is "
                                           "why a rank sweep needs a held-out evaluation."}},
    {"draft": "d05", "pair": ("dpo-direct-preference-optimization", "rlhf-ppo-pipeline"), "sentences": [
        ("This post compares DPO with the classic PPO-based RLHF pipeline.", []),
        ("Classic RLHF, the recipe behind InstructGPT and early ChatGPT, runs in three stages.", [2]),
        ("A reward model is trained on human comparisons: labelers rank answers, and a scalar head learns to score "
         "the preferred one higher.", [2]),
        ("PPO then pushes the policy towards higher reward, while a KL penalty keeps it near the SFT model so it "
         "does not drift into reward hacking.", [2]),
        ("In the curriculum's DPO run on Llama 3.1 8B, 1,948 HH-RLHF pairs at beta 0.1 reached a preference "
         "accuracy of 0.58 in about 16 minutes.", [1]),
        ("Setting ref_model=None lets TRL obtain the reference by switching off the PEFT adapter, which halves "
         "memory.", [1]),
        ("The learning rate is where DPO runs go wrong: it wants about 5e-7, far below the 2e-4 of SFT.", [1]),
    ],
        "wrong_number": {"at": 4, "text": "In the curriculum's DPO run on Llama 3.1 8B, 1,948 HH-RLHF pairs at beta "
                                          "0.1 reached a preference accuracy of 0.85 in about 16 minutes."},
        "wrong_source": {"at": 3, "cites": [1]},
        "uncited_claim": {"at": 6, "text": "DPO needs a much smaller learning rate than supervised fine-tuning, or it "
                                           "overwrites the model instead of nudging it."}},
    {"draft": "d06", "pair": ("reward-modeling-bradley-terry", "rlhf-ppo-pipeline"), "sentences": [
        ("This post looks at reward models and where they fit in RLHF.", []),
        ("Llama 3.2 1B Instruct was turned into a reward model using 5,000 of the 160,800 pairs in Anthropic's "
         "HH-RLHF set.", [1]),
        ("Training took roughly an hour and cost about $2.", [1]),
        ("Its scalar head begins with random weights, so the 'score.weight MISSING' warning at load time is "
         "expected rather than a bug.", [1]),
        ("In the RLHF pipeline such a model is the second of three stages, after supervised fine-tuning on "
         "demonstrations.", [2]),
        ("During the PPO stage the reward model scores the policy's answers and PPO updates the policy to raise "
         "that score.", [2]),
    ],
        "wrong_number": {"at": 1, "text": "Llama 3.2 1B Instruct was turned into a reward model using 50,000 of the "
                                          "160,800 pairs in Anthropic's HH-RLHF set."},
        "wrong_source": {"at": 3, "cites": [2]},
        "uncited_claim": {"at": 4, "text": "Reward modelling is the middle stage of RLHF, coming after supervised "
                                           "fine-tuning and before reinforcement learning."}},
    {"draft": "d07", "pair": ("flash-attention", "memory-bandwidth-bound-decoding"), "sentences": [
        ("This post puts numbers on two memory-bound parts of running a transformer.", []),
        ("FlashAttention sped up BERT-large training end to end by about 15% and GPT-2 training by up to 3 "
         "times.", [1]),
        ("It also made sequences of 16K to 64K tokens practical to train.", [1]),
        ("FlashAttention-2 reached 50 to 73% of an A100's theoretical FLOPs, roughly double the first version.", [1]),
        ("Decoding is different: producing one token multiplies each weight once, about 2 FLOPs per 2-byte "
         "weight.", [2]),
        ("For Llama 3.1 8B every token means streaming 16.1 GB from HBM, so a 2 TB/s GPU cannot go faster than "
         "about 8 ms per token.", [2]),
        ("That is roughly 125 tokens per second at batch 1, however many FLOPs the chip offers.", [2]),
    ],
        "wrong_number": {"at": 5, "text": "For Llama 3.1 8B every token means streaming 16.1 GB from HBM, so a 2 TB/s "
                                          "GPU cannot go faster than about 4 ms per token."},
        "wrong_source": {"at": 3, "cites": [2]},
        "uncited_claim": {"at": 1, "text": "FlashAttention made end-to-end BERT-large training about 15% faster."}},
    {"draft": "d08", "pair": ("speculative-decoding", "prefill-decode-latency"), "sentences": [
        ("Speculative decoding is easy to oversell, so it is worth being precise about both the gain and how it "
         "is measured.", []),
        ("With acceptance rate alpha and draft length k, each target pass yields (1 - alpha^(k+1)) / (1 - alpha) "
         "tokens on average.", [1]),
        ("At alpha = 0.8 and k = 4 that works out to roughly 3.4 tokens per pass.", [1]),
        ("The original papers reported generation 2 to 3 times faster on large models such as T5-XXL and "
         "Chinchilla 70B.", [1]),
        ("Latency should be reported as percentiles such as p50 and p99 rather than as averages.", [2]),
        ("Any such figure also needs the prompt length, the output length and the concurrency, because it depends "
         "on all three.", [2]),
    ],
        "wrong_number": {"at": 2, "text": "At alpha = 0.8 and k = 4 that works out to roughly 4.3 tokens per pass."},
        "wrong_source": {"at": 3, "cites": [2]},
        "uncited_claim": {"at": 4, "text": "Percentiles, not averages, are the honest way to report latency."}},
    {"draft": "d09", "pair": ("prefix-caching", "vllm-pagedattention"), "sentences": [
        ("This post explains prefix caching and PagedAttention.", []),
        ("Before vLLM each request got one contiguous KV buffer big enough for the longest output it could "
         "produce.", [2]),
        ("The vLLM authors found that only 20% to 38% of that memory held actual tokens.", [2]),
        ("Paged KV memory already splits the cache into blocks, 16 tokens each by default.", [1]),
        ("Automatic prefix caching names each full block by hashing its tokens together with everything before "
         "it, so a block is reused only when the whole prefix matches.", [1]),
        ("A new request is matched against the cache block by block, and prefill resumes after the longest "
         "match.", [1]),
        ("SGLang's RadixAttention arranges the same idea as a radix tree over token sequences.", [1]),
    ],
        "wrong_number": {"at": 3, "text": "Paged KV memory already splits the cache into blocks, 32 tokens each by "
                                          "default."},
        "wrong_source": {"at": 5, "cites": [2]},
        "uncited_claim": {"at": 6, "text": "SGLang implements the same idea with a radix tree over token sequences, "
                                           "RadixAttention."}},
    {"draft": "d10", "pair": ("hnsw-index", "ivfflat-index"), "sentences": [
        ("This post covers two ways a vector index can surprise you.", []),
        ("An HNSW index hands back its nearest candidates first and only then applies the WHERE filter.", [1]),
        ("So a selective filter can leave a query with fewer rows than its LIMIT asked for.", [1]),
        ("pgvector 0.8 introduced iterative index scans that keep walking the graph until enough rows pass, capped "
         "by hnsw.max_scan_tuples at 20,000 by default.", [1]),
        ("On 106 chunks, PostgreSQL 16 with an IVFFlat index answered in 3.7 ms at p50 and 7.7 ms at p99.", [2]),
        ("CockroachDB, scanning the same vectors with no index at all, had a p99 of 4.3 ms.", [2]),
        ("Below tens of thousands of vectors an exact scan is usually faster, and it is always exact.", [2]),
    ],
        "wrong_number": {"at": 5, "text": "CockroachDB, scanning the same vectors with no index at all, had a p99 of "
                                          "3.4 ms."},
        "wrong_source": {"at": 6, "cites": [1]},
        "uncited_claim": {"at": 2, "text": "A selective filter can therefore return fewer rows than the query's "
                                           "LIMIT."}},
    {"draft": "d11", "pair": ("hybrid-search-rrf", "rerankers-cross-encoders"), "sentences": [
        ("This post looks at reciprocal rank fusion and at cross-encoder rerankers.", []),
        ("Dense and full-text retrievers score on different scales, so simply adding their scores requires "
         "calibration.", [1]),
        ("Reciprocal rank fusion sidesteps that by using ranks only: each document scores the sum of 1 / (k + "
         "rank) over the rankings, with k = 60 in the original paper.", [1]),
        ("A document placed first by one retriever and tenth by the other therefore gets 1/61 + 1/70.", [1]),
        ("The curriculum tried ms-marco-MiniLM-L-6-v2, a cross-encoder trained on MS MARCO, to rerank the top 20 "
         "down to 5.", [2]),
        ("It lost 20 points of top-1 accuracy and cancelled out what HyDE had gained.", [2]),
        ("Trained on web search, it marked down passages dense with technical jargon.", [2]),
    ],
        "wrong_number": {"at": 5, "text": "It lost 30 points of top-1 accuracy and cancelled out what HyDE had "
                                          "gained."},
        "wrong_source": {"at": 6, "cites": [1]},
        "uncited_claim": {"at": 1, "text": "Dense and full-text retrievers produce scores on different scales, which "
                                           "is why adding them needs calibration."}},
    {"draft": "d12", "pair": ("hyde-query-expansion", "embedding-model-selection"), "sentences": [
        ("This post looks at query expansion with HyDE and at the choice of embedding model.", []),
        ("On the curriculum's 10-query set, HyDE with Claude Haiku hypotheses raised the hit rate from 85% to 100% "
         "and top-1 accuracy from 80% to 90%.", [1]),
        ("The clearest win was a question whose top-5 similarities spanned only 0.504 to 0.477.", [1]),
        ("Its hypothesis used inference vocabulary and landed squarely on the right note.", [1]),
        ("In a pairwise test on the curriculum's notes, MPNet bridged paraphrases far better than MiniLM, by "
         "+0.143.", [2]),
        ("MPNet also rated a misleading pair higher, so on the adversarial case MiniLM was the safer model.", [2]),
    ],
        "wrong_number": {"at": 2, "text": "The clearest win was a question whose top-5 similarities spanned only "
                                          "0.504 to 0.447."},
        "wrong_source": {"at": 3, "cites": [2]},
        "uncited_claim": {"at": 5, "text": "On the adversarial pair MiniLM was actually the safer of the two "
                                           "models."}},
    {"draft": "d13", "pair": ("ragas-evaluation", "rag-chunking-strategies"), "sentences": [
        ("This post tells the story of one retrieval failure that a single metric hid.", []),
        ("The curriculum's first RAG pipeline chunked notes into fixed 400-word windows with 50 words of "
         "overlap.", [2]),
        ("Asked why DPO replaced PPO-based RLHF, it retrieved the right note, yet the generator said the context "
         "lacked the answer.", [2]),
        ("The explanation had been split across a chunk boundary, leaving neither half complete.", [2]),
        ("RAGAS showed the pattern: faithfulness 1.000 but answer relevancy 0.000, with context recall at "
         "0.500.", [1]),
        ("Faithfulness of 1 together with relevancy of 0 is the signature of a chunking failure.", [1]),
        ("Hit rate on its own counted the query as a success.", [1]),
    ],
        "wrong_number": {"at": 4, "text": "RAGAS showed the pattern: faithfulness 1.000 but answer relevancy 0.000, "
                                          "with context recall at 0.250."},
        "wrong_source": {"at": 1, "cites": [1]},
        "uncited_claim": {"at": 3, "text": "The explanation had been cut across a chunk boundary, so neither half "
                                           "could answer."}},
    {"draft": "d14", "pair": ("llm-as-judge-calibration", "editor-rubric-decision"), "sentences": [
        ("This post looks at calibrating an LLM judge and at the gate built on it.", []),
        ("The first judge scored above the human on 17 of 20 responses, an 85% positive bias.", [1]),
        ("The culprit was a lenient score-2 anchor for technical accuracy, which let fluent answers with a wrong "
         "core definition earn middling marks.", [1]),
        ("Rubric v1.1 now says an answer with the wrong core definition scores 2 or lower on technical "
         "accuracy.", [1]),
        ("On a 50-prompt evaluation none of the model variants averaged above 2.6 out of 5.", [2]),
        ("Confident hallucination flags hit 54% of base answers and 74% of both SFT and DPO answers.", [2]),
        ("Fine-tuning improved the style dimensions while the accuracy dimensions got worse.", [2]),
    ],
        "wrong_number": {"at": 5, "text": "Confident hallucination flags hit 45% of base answers and 74% of both SFT "
                                          "and DPO answers."},
        "wrong_source": {"at": 6, "cites": [1]},
        "uncited_claim": {"at": 6, "text": "Fine-tuning made the answers sound more expert without making them more "
                                           "accurate."}},
    {"draft": "d15", "pair": ("circuit-breakers", "retries-backoff-jitter"), "sentences": [
        ("This post is about which errors a client should retry and which should open a circuit breaker.", []),
        ("For a circuit breaker, connection errors, timeouts, HTTP 5xx responses and 429s count as failures.", [1]),
        ("A 400 caused by a bad request does not count, and neither does a valid response that fails schema "
         "validation.", [1]),
        ("Treating those as failures opens breakers on servers that are perfectly healthy.", [1]),
        ("Transient errors are the ones worth retrying: connection resets, timeouts, 429, 502, 503 and 504, and "
         "database serialization failures.", [2]),
        ("Only idempotent operations, or ones protected by an idempotency key, should be retried, since a "
         "timed-out POST may have gone through.", [2]),
    ],
        "wrong_number": {"at": 4, "text": "Transient errors are the ones worth retrying: connection resets, timeouts, "
                                          "429, 502, 503 and 505, and database serialization failures."},
        "wrong_source": {"at": 2, "cites": [2]},
        "uncited_claim": {"at": 3, "text": "Counting such errors as failures trips breakers on healthy endpoints."}},
    {"draft": "d16", "pair": ("serializable-transactions-retries", "cockroachdb-vs-postgresql"), "sentences": [
        ("This post looks at contention under SERIALIZABLE and at how two databases scale with writers.", []),
        ("Without a retry loop, contention at SERIALIZABLE shows up as errors the user sees.", [1]),
        ("On embedded PostgreSQL 18, four tasks each incrementing one shared row 50 times landed only 60 of 200 "
         "increments without retries.", [1]),
        ("The other 140 transactions failed with SQLSTATE 40001; with a retry loop all 200 committed.", [1]),
        ("In the curriculum's measurement CockroachDB was half as fast as PostgreSQL with a single writer.", [2]),
        ("With four writers it sped up 1.67 times, while PostgreSQL slowed to 0.93 times.", [2]),
    ],
        "wrong_number": {"at": 5, "text": "With four writers it sped up 1.76 times, while PostgreSQL slowed to 0.93 "
                                          "times."},
        "wrong_source": {"at": 1, "cites": [2]},
        "uncited_claim": {"at": 4, "text": "CockroachDB ran at half the speed of PostgreSQL with one writer."}},
    {"draft": "d17", "pair": ("vector-storage-benchmark", "pgvector-filtering"), "sentences": [
        ("This post explains why the fastest vector store in a benchmark can still be the wrong choice.", []),
        ("Chroma was the fastest in every test but runs in-process and has no multi-writer transactions.", [1]),
        ("Its 'hybrid' filter actually ran after retrieval, in Python.", [1]),
        ("CockroachDB got faster as concurrency grew, from 383 to 640 doc/s.", [1]),
        ("Filtering in application code after retrieval looks fine on a small corpus.", [2]),
        ("At scale, returning 5 matches can mean over-fetching thousands of candidates, and k results are still "
         "not guaranteed.", [2]),
        ("At 10 million chunks the benchmark's post-filtering approach would pull thousands of candidates to keep "
         "5.", [2]),
    ],
        "wrong_number": {"at": 3, "text": "CockroachDB got faster as concurrency grew, from 383 to 460 doc/s."},
        "wrong_source": {"at": 4, "cites": [1]},
        "uncited_claim": {"at": 2, "text": "Its so-called hybrid filter was applied after retrieval, in Python."}},
    {"draft": "d18", "pair": ("quantization-formats", "qlora-4bit-finetuning"), "sentences": [
        ("This post looks at how much memory quantization saves and at what a QLoRA fine-tune costs.", []),
        ("In bfloat16 Llama 3.1 8B takes 16.1 GB; at 8 bits it is about 8 GB, and at 4 bits roughly 4.5 to 5 GB "
         "including scales.", [1]),
        ("For bandwidth-bound decoding, fewer bits per weight also means more speed.", [1]),
        ("The curriculum's QLoRA run trained rank-16 bf16 adapters on an NF4 base, across all attention and MLP "
         "projections.", [2]),
        ("It covered 550 Q&A pairs for 3 epochs, 102 steps in all, on one A100 80GB.", [2]),
        ("At roughly $1.49 per hour the whole run cost under $0.15.", [2]),
    ],
        "wrong_number": {"at": 4, "text": "It covered 550 Q&A pairs for 5 epochs, 102 steps in all, on one A100 "
                                          "80GB."},
        "wrong_source": {"at": 2, "cites": [2]},
        "uncited_claim": {"at": 2, "text": "Because decoding is bandwidth-bound, quantized weights also make it "
                                           "faster."}},
    {"draft": "d19", "pair": ("tokenization-vocabulary", "rmsnorm-swiglu"), "sentences": [
        ("This post covers two quiet changes between GPT-2 and Llama: the tokenizer and the MLP.", []),
        ("GPT-2's byte-pair encoding has 50,257 tokens, while Llama 2 used a 32,000-token SentencePiece "
         "vocabulary.", [1]),
        ("Llama 3 switched to a tiktoken-style BPE with 128,256 tokens.", [1]),
        ("Meta says it encodes the same text in up to 15% fewer tokens than the Llama 2 tokenizer.", [1]),
        ("Llama's SwiGLU MLP has three matrices where GPT-2's has two.", [2]),
        ("Its gate_proj and up_proj both map 4096 to 14,336, and down_proj maps the result back.", [2]),
        ("Llama 3.1 uses a 3.5x hidden width, which makes its MLP about 1.3 times the size of a classic 4x "
         "one.", [2]),
    ],
        "wrong_number": {"at": 2, "text": "Llama 3 switched to a tiktoken-style BPE with 128,000 tokens."},
        "wrong_source": {"at": 4, "cites": [1]},
        "uncited_claim": {"at": 6, "text": "Llama's wider SwiGLU layer ends up about a third larger than a classic "
                                           "GELU MLP."}},
    {"draft": "d20", "pair": ("rope-positional-encoding", "grouped-query-attention"), "sentences": [
        ("This post covers two parts of Llama's attention: how it encodes position and how it shares key/value "
         "heads.", []),
        ("RoPE learns no parameters at all.", [1]),
        ("Rather than adding a position vector, it rotates each pair of query and key dimensions by an angle "
         "proportional to the token's position.", [1]),
        ("The dot product of a rotated query and key then depends only on their relative distance.", [1]),
        ("In Llama 3.1 8B, q_proj is 4096 by 4096 while k_proj and v_proj are 1024 by 4096, reflecting 32 query "
         "heads and 8 KV heads.", [2]),
        ("Four query heads share every KV head, so the cache is a quarter of what MHA would need.", [2]),
    ],
        "wrong_number": {"at": 4, "text": "In Llama 3.1 8B, q_proj is 4096 by 4096 while k_proj and v_proj are 1024 "
                                          "by 4096, reflecting 32 query heads and 16 KV heads."},
        "wrong_source": {"at": 3, "cites": [2]},
        "uncited_claim": {"at": 1, "text": "RoPE has no learned parameters."}},
    {"draft": "d21", "pair": ("mixture-of-experts-routing", "memory-bandwidth-bound-decoding"), "sentences": [
        ("This post works through the arithmetic of mixture-of-experts models and of decoding.", []),
        ("A mixture-of-experts layer swaps a single feed-forward network for several experts plus a router that "
         "sends each token to a few of them.", [1]),
        ("Mixtral 8x7B has 8 experts per layer and picks the top 2 for every token.", [1]),
        ("Only about 12.9B of its 46.7B parameters are active per token.", [1]),
        ("All 46.7B parameters still have to sit in memory.", [1]),
        ("Decoding one token for one sequence streams every weight from HBM, at an arithmetic intensity near "
         "1.", [2]),
        ("For Llama 3.1 8B that caps a 2 TB/s GPU at roughly 125 tokens per second at batch 1.", [2]),
    ],
        "wrong_number": {"at": 3, "text": "Only about 12.9B of its 47.6B parameters are active per token."},
        "wrong_source": {"at": 4, "cites": [2]},
        "uncited_claim": {"at": 5, "text": "Generating a token for a single sequence has to stream all of the weights "
                                           "from HBM."}},
    {"draft": "d22", "pair": ("sft-dataset-pipeline", "contamination-vs-confabulation"), "sentences": [
        ("This post looks at where a fine-tuned model's hallucinations come from.", []),
        ("Of 589 question-answer pairs extracted, 550 survived filtering, a 6.6% filter rate.", [1]),
        ("Every answer had to have at least 75 words, which removed shallow pairs.", [1]),
        ("A contamination test found an average score delta of +0.15, with 0 of 10 pairs showing a contamination "
         "signal.", [2]),
        ("The hallucinations were confabulation, not memorised test data.", [2]),
        ("The GQA and DPO facts were never in the 550 training pairs, so every variant filled the gap with fluent "
         "invention.", [2]),
    ],
        "wrong_number": {"at": 1, "text": "Of 589 question-answer pairs extracted, 550 survived filtering, a 7.1% "
                                          "filter rate."},
        "wrong_source": {"at": 5, "cites": [1]},
        "uncited_claim": {"at": 4, "text": "The model's hallucinations came from confabulation, not "
                                           "contamination."}},
    {"draft": "d23", "pair": ("exactly-once-publishing", "langgraph-checkpointing-interrupts"), "sentences": [
        ("This post explains how a durable agent run publishes exactly once.", []),
        ("The publish key is derived deterministically, for example from the thread id plus a hash of the "
         "approved draft.", [1]),
        ("A revised draft therefore gets a new key, while the same approved draft always maps to the same one.", [1]),
        ("Inserting the key into a ledger with a UNIQUE constraint and marking the post published happen in a "
         "single transaction.", [1]),
        ("LangGraph with a checkpointer saves the state after every step, keyed by a thread id.", [2]),
        ("A crashed process can therefore resume the thread from its last checkpoint.", [2]),
    ],
        "wrong_number": {"at": 3, "text": "Inserting the key into a ledger with a UNIQUE constraint and marking the "
                                          "post published happen in two separate transactions."},
        "wrong_source": {"at": 4, "cites": [1]},
        "uncited_claim": {"at": 5, "text": "Because the state is saved after each step, a process that crashes can "
                                           "pick the thread up again from its last checkpoint."}},
    {"draft": "d24", "pair": ("agent-tracing-cost", "react-agents-tool-use"), "sentences": [
        ("This post looks at how an agent loop spends tokens.", []),
        ("The cost of a call is input tokens times the input price plus output tokens times the output price, "
         "with prices quoted per million tokens.", [1]),
        ("A content-engine run makes a researcher HyDE call of a few hundred tokens, one to four writer drafts "
         "and one judge call per draft.", [1]),
        ("Because revisions multiply writer and judge cost, the revision cap of 3 doubles as a cost cap.", [1]),
        ("ReAct, from Yao et al. in 2022, structures an agent as a loop of thought, action and observation.", [2]),
        ("The tool's result comes back as an observation appended to the model's context, and the loop repeats "
         "until it can answer.", [2]),
    ],
        "wrong_number": {"at": 2, "text": "A content-engine run makes a researcher HyDE call of a few hundred tokens, "
                                          "one to six writer drafts and one judge call per draft."},
        "wrong_source": {"at": 5, "cites": [1]},
        "uncited_claim": {"at": 3, "text": "Revisions multiply the writer and judge cost, which makes the revision cap "
                                           "a cost cap too."}},
]
