"""Held-out drafts for the planted-error set (make_planted.py --heldout builds planted-heldout.jsonl).

The same format as evals/faithfulness/drafts.py (see its docstring): one draft per pair of corpus
notes, [1] and [2] being the excerpts make_planted.excerpt_of picks, every fact paraphrased from
the excerpt it cites, numbers as the source gives them (a computed one marked "(derived)"), and
three planted errors per draft, each one sentence changed (wrong_number, wrong_source,
uncited_claim). Openers, when there is one, state no fact.

Written on 2026-12-01 by another hand than drafts.py, for scoring the citation check ONCE after its
rules are final (issue 14, item 5): written without reading the check's code or its tuning
results, and committed before any rule was run on it. Pairs are ones drafts.py does not use (the
corpus has 44 notes and drafts.py uses 43 of them, so most notes appear in both sets, through the
same excerpt, but in other pairings and for other facts of it). The wrong numbers are of several
kinds: a value the source does not give, a number the source gives for something else, a wrong
count in words, a wrong unit or ratio.
"""
from __future__ import annotations

DRAFTS: list[dict] = [
    {"draft": "h01", "pair": ("kv-cache-arithmetic", "vllm-pagedattention"), "sentences": [
        ("How much memory does a long-context server really need for its KV cache, and how much of it goes to "
         "waste?", []),
        ("Serving the 8B model 10 sequences at a time with 128K tokens of context takes 171.8 GB of KV cache, "
         "which no pair of A100 80GB cards can hold.", [1]),
        ("The weights themselves are a modest 16.1 GB by comparison.", [1]),
        ("At a batch of 50 the cache would reach 859 GB.", [1]),
        ("The larger Llama 3 70B, with 80 layers and 8 KV heads, stores 320 KiB for every token, so a single "
         "128K-token sequence already needs 42.9 GB.", [1]),
        ("Before vLLM, servers made this worse by reserving one contiguous KV buffer per request, big enough for "
         "the longest output it could produce.", [2]),
        ("Kwon et al. found at SOSP 2023 that such systems put only 20% to 38% of their KV cache memory to use "
         "for real tokens.", [2]),
        ("Losing 60% to 80% of a 171.8 GB cache would mean more than 100 GB of reserved but empty memory "
         "(derived).", [1, 2]),
    ],
        "wrong_number": {"at": 4, "text": "The larger Llama 3 70B, with 80 layers and 8 KV heads, stores 320 KiB for "
                                          "every token, so a single 128K-token sequence already needs 42.9 MB."},
        "wrong_source": {"at": 6, "cites": [1]},
        "uncited_claim": {"at": 2, "text": "Next to that, the model's own weights are small, only 16.1 GB."}},
    {"draft": "h02", "pair": ("continuous-batching", "prefix-caching"), "sentences": [
        ("Orca, presented by Yu et al. at OSDI 2022, was the first to schedule a batch one decoding step at a "
         "time.", [1]),
        ("Whenever a step ends, completed sequences are dropped and queued ones are admitted, which keeps every "
         "slot busy.", [1]),
        ("Prefill of a newcomer's prompt can run alongside the decode steps of the sequences already in "
         "flight.", [1]),
        ("Prefix caching builds on the paged KV layout, in which the cache is already divided into blocks of 16 "
         "tokens unless configured otherwise.", [2]),
        ("Each full block is keyed by a hash of its own tokens combined with the hash of all the tokens before it, "
         "so a block is shared only when the whole prefix leading to it is identical.", [2]),
        ("On arrival, a prompt is matched block by block against the cache, and prefill resumes after the "
         "longest hit.", [2]),
        ("Cached blocks that no request references stay resident until they are evicted, least recently used "
         "first.", [2]),
        ("SGLang's RadixAttention keeps the same kind of cache as a radix tree over token sequences, a good fit "
         "when many agents share one scratchpad.", [2]),
    ],
        "wrong_number": {"at": 3, "text": "Prefix caching builds on the paged KV layout, in which the cache is already "
                                          "divided into blocks of 32 tokens unless configured otherwise."},
        "wrong_source": {"at": 0, "cites": [2]},
        "uncited_claim": {"at": 5, "text": "A new request's prompt is compared against the cached blocks one at a "
                                           "time, and prefill starts right after the longest matching run."}},
    {"draft": "h03", "pair": ("tokenization-vocabulary", "kv-cache-arithmetic"), "sentences": [
        ("What follows puts vocabulary size next to KV cache.", []),
        ("GPT-2 tokenised text with a 50,257-entry byte-pair vocabulary, and Llama 2 with 32,000 SentencePiece "
         "tokens.", [1]),
        ("Llama 3 switched to a tiktoken-style BPE of 128,256 tokens, about four times Llama 2's count "
         "(derived).", [1]),
        ("Meta says the new tokenizer needs up to 15% fewer tokens than Llama 2's for the same text.", [1]),
        ("Shorter sequences make prefill cheaper, fit more text into a context window and leave less KV cache "
         "per document.", [1]),
        ("That cache is not small: Llama 3 70B, with 80 layers and 8 KV heads, keeps 320 KiB per token.", [2]),
        ("One 128K-token sequence on that model therefore occupies 42.9 GB.", [2]),
        ("A 15% cut in tokens would save roughly 6.4 GB on such a sequence (derived).", [1, 2]),
    ],
        "wrong_number": {"at": 1, "text": "GPT-2 tokenised text with a 50,257-entry byte-pair vocabulary, and Llama 2 "
                                          "with 128,256 SentencePiece tokens."},
        "wrong_source": {"at": 3, "cites": [2]},
        "uncited_claim": {"at": 6, "text": "At 128K tokens, a single sequence of the 70B model fills 42.9 GB of "
                                           "cache."}},
    {"draft": "h04", "pair": ("quantization-formats", "memory-bandwidth-bound-decoding"), "sentences": [
        ("Why does a smaller file make a model generate faster?", []),
        ("Decoding one token for one sequence touches each weight once, about two FLOPs per two-byte bf16 weight, "
         "so its arithmetic intensity is close to one.", [2]),
        ("All of the weights have to come from HBM on every step, which for Llama 3.1 8B means 16.1 GB per "
         "token.", [2]),
        ("On a GPU with 2 TB/s of bandwidth that sets a floor near 8 ms per token, about 125 tokens per second "
         "for a single sequence, however many FLOPs are available.", [2]),
        ("Quantization goes after exactly that cost by storing weights in fewer bits, which saves memory and "
         "speeds up bandwidth-bound decoding.", [1]),
        ("The same 8B model shrinks from 16.1 GB in bfloat16 to about 8 GB at 8 bits and to roughly 4.5 to 5 GB "
         "at 4 bits, scales included.", [1]),
        ("At 5 GB per token the 2 TB/s floor would drop to about 2.5 ms (derived).", [1, 2]),
        ("Reading the KV cache adds to those bytes as the context grows.", [2]),
    ],
        "wrong_number": {"at": 1, "text": "Decoding one token for one sequence touches each weight once, about two "
                                          "FLOPs per two-byte bf16 weight, so its arithmetic intensity is close to "
                                          "two."},
        "wrong_source": {"at": 5, "cites": [2]},
        "uncited_claim": {"at": 3, "text": "With 2 TB/s of memory bandwidth, the best a GPU can do at batch 1 is "
                                           "roughly 8 ms a token, or 125 tokens a second."}},
    {"draft": "h05", "pair": ("mixture-of-experts-routing", "rmsnorm-swiglu"), "sentences": [
        ("In a mixture-of-experts layer the single feed-forward network gives way to several experts, with a "
         "router choosing a few of them for each token.", [1]),
        ("Mixtral 8x7B has eight experts in each layer and sends every token to two of them.", [1]),
        ("Only about 12.9B of its 46.7B parameters are therefore active for any one token.", [1]),
        ("It computes roughly like a 13B dense model per token while keeping the knowledge capacity of a much "
         "larger one, but the full 46.7B must still be held in memory.", [1]),
        ("Llama's feed-forward block, a SwiGLU MLP, uses three matrices where GPT-2's used two.", [2]),
        ("Its gate_proj and up_proj both widen 4096 to 14,336, and down_proj brings the result back to 4096.",
         [2]),
        ("To match a 4x GELU MLP's parameter count, the SwiGLU paper cut the hidden width to two thirds of 4x, "
         "about 2.7x.", [2]),
        ("Llama 3.1 instead goes to 3.5x, which makes its MLP about 1.3 times the size of a classic one.", [2]),
    ],
        "wrong_number": {"at": 2, "text": "Only about 12.9B of its 56B parameters are therefore active for any one "
                                          "token."},
        "wrong_source": {"at": 1, "cites": [2]},
        "uncited_claim": {"at": 6, "text": "The original SwiGLU work trimmed the hidden width to about 2.7 times the "
                                           "model width so the parameter count stayed the same as a 4x GELU MLP."}},
    {"draft": "h06", "pair": ("lora-low-rank-adaptation", "serving-lora-adapters"), "sentences": [
        ("A LoRA adapter is easiest to understand by counting what it adds.", []),
        ("On a weight matrix of shape d_out x d_in, a LoRA pair contributes r x (d_in + d_out) parameters.", [1]),
        ("With r = 16 on all seven projections of Llama 3.1 8B, the q and o projections get 131,072 extra "
         "parameters each and k and v 81,920 each.", [1]),
        ("The three MLP projections, gate, up and down, take 294,912 apiece.", [1]),
        ("Over the model's 32 layers that sums to 41,943,040 parameters, 0.52% of the model.", [1]),
        ("Stored in 16-bit, the adapter comes to roughly 160 to 161 MB, against 16.1 GB for the base model.",
         [1, 2]),
        ("Serving keeps a single copy of the base weights on the GPU and attaches adapters request by "
         "request.", [2]),
        ("A hundred such adapters would add about 16 GB, roughly one more base model (derived).", [2]),
    ],
        "wrong_number": {"at": 4, "text": "Over the model's 32 layers that sums to 41,943,040 parameters, 5.2% of the "
                                          "model."},
        "wrong_source": {"at": 3, "cites": [2]},
        "uncited_claim": {"at": 1, "text": "Each LoRA pair adds r times the sum of the matrix's input and output "
                                           "widths in parameters."}},
    {"draft": "h07", "pair": ("reward-modeling-bradley-terry", "dpo-direct-preference-optimization"), "sentences": [
        ("Here are two preference-tuning runs, side by side.", []),
        ("For the reward model, Llama 3.2 1B Instruct was trained on 5,000 pairs from Anthropic's HH-RLHF, out "
         "of 160,800 available.", [1]),
        ("Training took about an hour and cost roughly $2.", [1]),
        ("Its scalar head starts from random weights, so the \"score.weight MISSING\" warning at load time is "
         "expected rather than a bug.", [1]),
        ("The DPO run used Llama 3.1 8B on a 4-bit NF4 base with the SFT LoRA adapter, 1,948 HH-RLHF pairs, beta "
         "0.1 and a learning rate of 5e-7.", [2]),
        ("It finished with a loss of 0.90, preference accuracy 0.58 and reward margin 0.44, in about 16 minutes "
         "for about $0.50, using 51 GB of the card's 80 GB.", [2]),
        ("Passing ref_model=None lets TRL get the reference model by switching off the PEFT adapter, which halves "
         "memory compared with loading a second copy.", [2]),
        ("A learning rate of SFT's 2e-4 would overwrite the model rather than nudge it.", [2]),
    ],
        "wrong_number": {"at": 5, "text": "It finished with a loss of 0.90, preference accuracy 0.58 and reward margin "
                                          "0.44, in about 16 minutes for about $2, using 51 GB of the card's 80 GB."},
        "wrong_source": {"at": 7, "cites": [1]},
        "uncited_claim": {"at": 2, "text": "The whole reward-model run needed roughly an hour and about $2."}},
    {"draft": "h08", "pair": ("sft-dataset-pipeline", "qlora-4bit-finetuning"), "sentences": [
        ("Start with the data.", []),
        ("Of 589 raw question-answer pairs extracted, 550 were kept after filtering, a filter rate of 6.6%.", [1]),
        ("Filtering discarded 39 pairs (derived).", [1]),
        ("A minimum answer length of 75 words weeded out shallow pairs that added noise and no signal.", [1]),
        ("QLoRA then fine-tuned Llama 3.1 8B Instruct on 550 Q&A pairs, with an NF4 base and bf16 adapters at "
         "rank 16 on every attention and MLP projection.", [2]),
        ("Three epochs came to 102 steps on a single A100 80GB.", [2]),
        ("At about $1.49 an hour on RunPod, the bill stayed under $0.15.", [2]),
        ("The compute is the easy part; the curated dataset is what sets the result apart.", [2]),
    ],
        "wrong_number": {"at": 5, "text": "Three epochs came to 102 steps on two A100 80GB cards."},
        "wrong_source": {"at": 3, "cites": [2]},
        "uncited_claim": {"at": 6, "text": "RunPod's rate of roughly $1.49 per hour kept the total below $0.15."}},
    {"draft": "h09", "pair": ("contamination-vs-confabulation", "editor-rubric-decision"), "sentences": [
        ("Were the wrong answers memorised or invented?", []),
        ("The contamination test found an average score delta of +0.15, with no contamination signal in any of "
         "the 10 pairs.", [1]),
        ("What the models produced was confabulation, not recall.", [1]),
        ("The GQA and DPO definitions came out wrong in the same way in the base, SFT and DPO variants, because "
         "those facts were never among the 550 training pairs.", [1]),
        ("Across a 50-prompt evaluation no variant averaged more than 2.6 out of 5: base 2.400, SFT 2.520 and "
         "DPO 2.575.", [2]),
        ("Confident hallucinations were flagged on 54% of base answers and 74% of both SFT and DPO answers.", [2]),
        ("Fine-tuning lifted style, with mechanistic depth up 0.72 and audience calibration up 0.48, while "
         "technical accuracy fell 0.20 and calibration 0.42.", [2]),
        ("The models learned to sound like experts without becoming experts, which is why answers go through "
         "the gate before they publish.", [2]),
    ],
        "wrong_number": {"at": 5, "text": "Confident hallucinations were flagged on 54% of base answers and 47% of both "
                                          "SFT and DPO answers."},
        "wrong_source": {"at": 3, "cites": [2]},
        "uncited_claim": {"at": 6, "text": "Style scores rose after fine-tuning (depth +0.72, audience +0.48) while the "
                                           "accuracy scores dropped (technical accuracy -0.20, calibration -0.42)."}},
    {"draft": "h10", "pair": ("llm-as-judge-calibration", "ragas-evaluation"), "sentences": [
        ("Compared with a human grader, the first judge gave the higher score on 17 of the 20 responses, a "
         "positive bias of 85%.", [1]),
        ("The culprit was a lenient score-2 anchor for technical accuracy, which let fluent answers with the "
         "wrong core definition collect middling marks.", [1]),
        ("Rubric v1.1 caps such answers at 2 on technical accuracy, however polished the rest of the response "
         "is.", [1]),
        ("RAGAS caught a different failure on the question of why DPO replaced PPO-based RLHF in practice.", [2]),
        ("There the hit rate was 100% and faithfulness 1.000, but answer relevancy was 0.000 and context recall "
         "0.500.", [2]),
        ("A faithfulness of 1 next to a relevancy of 0 points to a chunking failure: the right document came "
         "back, its chunk held half the explanation, and the model declined to make up the rest.", [2]),
        ("By hit rate alone, that query would have been scored a success.", [2]),
    ],
        "wrong_number": {"at": 0, "text": "Compared with a human grader, the first judge gave the higher score on 17 "
                                          "of the 20 responses, a positive bias of 80%."},
        "wrong_source": {"at": 2, "cites": [2]},
        "uncited_claim": {"at": 4, "text": "Hit rate came out at 100% and faithfulness at 1.000, yet relevancy was "
                                           "0.000 and recall 0.500."}},
    {"draft": "h11", "pair": ("hyde-query-expansion", "rerankers-cross-encoders"), "sentences": [
        ("First the trick that helped, then the one that backfired.", []),
        ("On the curriculum's 10-query set, plain retrieval scored an 85% hit rate and 80% top-1 accuracy.", [1]),
        ("Adding HyDE, with hypotheses written by Claude Haiku, raised those to 100% and 90%.", [1]),
        ("The clearest example was a query whose top-5 similarities were packed between 0.504 and 0.477, a "
         "spread of only 0.027, since its wording matched hardware-architecture notes as well as inference "
         "ones.", [1]),
        ("A hypothetical answer phrased in inference vocabulary put it squarely on the right note.", [1]),
        ("Reranking the top 20 down to 5 with ms-marco-MiniLM-L-6-v2, a cross-encoder trained on MS MARCO "
         "web-search pairs, cost 20 points of top-1 accuracy and wiped out HyDE's gains.", [2]),
        ("Having learned from web search, the model marked down passages dense with technical jargon that do not "
         "look like typical web answers.", [2]),
        ("On a specialised corpus, a general-purpose reranker can do real harm.", [2]),
    ],
        "wrong_number": {"at": 5, "text": "Reranking the top 20 down to 5 with ms-marco-MiniLM-L-6-v2, a cross-encoder "
                                          "trained on MS MARCO web-search pairs, cost 10 points of top-1 accuracy and "
                                          "wiped out HyDE's gains."},
        "wrong_source": {"at": 3, "cites": [2]},
        "uncited_claim": {"at": 6, "text": "Because it was trained on web search, it penalised jargon-heavy passages "
                                           "that look nothing like web answers."}},
    {"draft": "h12", "pair": ("hnsw-index", "pgvector-filtering"), "sentences": [
        ("Filtering in application code after retrieval looks fine on a small corpus: ask for 5, filter, and 5 "
         "come back.", [2]),
        ("At scale the filter can remove most of the top results, so the client over-fetches thousands of "
         "candidates and still cannot promise k rows.", [2]),
        ("In the curriculum's benchmark Chroma ran its hybrid filter in Python after retrieval, which at 10 "
         "million chunks would mean pulling thousands of candidates to keep 5.", [2]),
        ("Even inside the database an HNSW index returns its nearest candidates first and applies the WHERE "
         "filter to them, so with a selective filter and default settings a query can come back with fewer rows "
         "than its LIMIT.", [1]),
        ("pgvector 0.8 added iterative index scans, strict_order or relaxed_order, that keep walking the graph "
         "until enough rows pass.", [1]),
        ("They stop at hnsw.max_scan_tuples, 20,000 by default.", [1]),
        ("The vector type can be indexed up to 2,000 dimensions, and halfvec up to 4,000.", [1]),
    ],
        "wrong_number": {"at": 5, "text": "They stop at hnsw.max_scan_tuples, two thousand by default."},
        "wrong_source": {"at": 4, "cites": [2]},
        "uncited_claim": {"at": 1, "text": "Once the corpus grows, a post-filter may discard most of the top hits, "
                                           "forcing the client to fetch thousands of candidates with no guarantee of "
                                           "k results."}},
    {"draft": "h13", "pair": ("ivfflat-index", "cockroachdb-vs-postgresql"), "sentences": [
        ("What does a vector index buy on a very small table?", []),
        ("In the curriculum's storage benchmark, PostgreSQL 16 with pgvector 0.8.2 and an IVFFlat index served "
         "similarity queries over 106 chunks at p50 3.7 ms and p99 7.7 ms.", [1]),
        ("CockroachDB, scanning the same 106 vectors with no vector index, had a p99 of 4.3 ms.", [1]),
        ("That is 3.4 ms less at the tail than PostgreSQL with its index (derived).", [1]),
        ("With so few vectors an exact scan finishes in microseconds, so the index only adds planning, probing "
         "and variance.", [1]),
        ("Below tens of thousands of vectors, an exact scan is usually the faster choice and is always exact.",
         [1]),
        ("With one writer CockroachDB was half as fast as PostgreSQL; with four it sped up 1.67 times, while "
         "PostgreSQL slowed to 0.93 times.", [2]),
        ("CockroachDB's tail latency was also tighter, even without a vector index at that version.", [2]),
    ],
        "wrong_number": {"at": 1, "text": "In the curriculum's storage benchmark, PostgreSQL 16 with pgvector 0.8.2 and "
                                          "an IVFFlat index served similarity queries over 106 chunks at p50 3.7 ms "
                                          "and p99 4.3 ms."},
        "wrong_source": {"at": 4, "cites": [2]},
        "uncited_claim": {"at": 2, "text": "The same 106 vectors, scanned by CockroachDB with no index at all, showed a "
                                           "p99 of 4.3 ms."}},
    {"draft": "h14", "pair": ("retries-backoff-jitter", "serializable-transactions-retries"), "sentences": [
        ("A short checklist for retries, then a measurement.", []),
        ("Retry the failures that are probably transient: connection resets, timeouts, HTTP 429, 502, 503 and "
         "504, and database serialization failures with code 40001.", [1]),
        ("Leave 400, 401, 403 and 404 alone, along with validation errors and anything else showing the request "
         "itself is at fault.", [1]),
        ("Only idempotent operations, or ones guarded by an idempotency key, should be retried, since a POST that "
         "timed out may in fact have gone through.", [1]),
        ("Skipping the retry loop turns contention into errors that users see.", [2]),
        ("On embedded PostgreSQL 18 at SERIALIZABLE, four tasks each incrementing one shared row 50 times "
         "committed only 60 of the 200 increments without retries.", [2]),
        ("The other 140 transactions failed with 40001; with a retry loop all 200 committed.", [2]),
        ("That is a 30% success rate without retries (derived).", [2]),
    ],
        "wrong_number": {"at": 7, "text": "That is a 60% success rate without retries (derived)."},
        "wrong_source": {"at": 3, "cites": [2]},
        "uncited_claim": {"at": 6, "text": "Without retries 140 of those transactions failed with error 40001, and with "
                                           "a retry loop every one of the 200 increments went through."}},
    {"draft": "h15", "pair": ("exactly-once-publishing", "prompt-injection-defense"), "sentences": [
        ("For a content engine, the worst thing an injected prompt can realistically do is get attacker-chosen "
         "text published.", [2]),
        ("Requiring approval before publishing, a publish key, a fixed set of destinations and a judge that scores "
         "factual grounding keep that outcome unlikely and visible.", [2]),
        ("The publish key is derived deterministically from what is being published, such as the thread id plus "
         "a hash of the approved draft.", [1]),
        ("An approved draft always maps to the same key, and a revision gets a new one.", [1]),
        ("Within one database transaction, the key goes into a publications ledger under a UNIQUE constraint and "
         "the post is marked published.", [1]),
        ("If the key is already there, the publish has happened, and the recorded result is returned instead of "
         "publishing a second time.", [1]),
        ("Where possible the destination should be idempotent as well: a file named after the key, the key sent "
         "as an Idempotency-Key header to a webhook, or a check for an existing message before sending.", [1]),
    ],
        "wrong_number": {"at": 4, "text": "Within two database transactions, the key goes into a publications ledger "
                                          "under a UNIQUE constraint and the post is marked published."},
        "wrong_source": {"at": 2, "cites": [2]},
        "uncited_claim": {"at": 5, "text": "When the key already exists, the post has already gone out, so the stored "
                                           "result is returned and nothing is published again."}},
    {"draft": "h16", "pair": ("langgraph-checkpointing-interrupts", "react-agents-tool-use"), "sentences": [
        ("An agent loop, and the machinery that lets it survive a crash.", []),
        ("ReAct, from Yao et al. in 2022, organises an agent as a repeating cycle of thought, action and "
         "observation.", [2]),
        ("The model writes a brief reasoning step, picks a tool call such as a search, a page fetch or a query, "
         "and gets the result back as an observation added to its context.", [2]),
        ("It keeps looping until it is able to answer.", [2]),
        ("LangGraph models an agent as a graph of nodes operating on a typed state.", [1]),
        ("Given a checkpointer, it stores the state after every step, which it calls a super-step, under a "
         "thread id.", [1]),
        ("A process that crashes can then pick a thread up again from its latest checkpoint, and a thread's "
         "whole state history can be inspected or forked.", [1]),
    ],
        "wrong_number": {"at": 1, "text": "ReAct, from Yao et al. in 2020, organises an agent as a repeating cycle of "
                                          "thought, action and observation."},
        "wrong_source": {"at": 5, "cites": [2]},
        "uncited_claim": {"at": 2, "text": "At each turn the model reasons briefly, calls a tool like search or a "
                                           "database query, and reads the tool's output back into its context as an "
                                           "observation."}},
    {"draft": "h17", "pair": ("agent-tracing-cost", "circuit-breakers"), "sentences": [
        ("Two questions come up when an agent calls LLM endpoints: what a run costs, and when an endpoint should "
         "count as failing.", []),
        ("Each call costs its input tokens times the input price plus its output tokens times the output price, "
         "with prices quoted per million tokens.", [1]),
        ("A run of the content engine makes a researcher HyDE call of a few hundred tokens, one to four writer "
         "drafts, and a judge call for every draft.", [1]),
        ("Each draft carries the research notes in its prompt, a few thousand tokens in and several hundred "
         "out.", [1]),
        ("Because revisions multiply writer and judge calls, the revision cap of 3 doubles as a cap on cost.",
         [1]),
        ("For a self-hosted model, GPU hours divided by tokens served stand in for a per-token price.", [1]),
        ("A circuit breaker should count connection errors, timeouts, HTTP 5xx and 429 as failures.", [2]),
        ("A 400 from a bad request, or a valid response that fails schema validation, should not count, because "
         "the server is healthy and retrying elsewhere will not repair the request.", [2]),
    ],
        "wrong_number": {"at": 4, "text": "Because revisions multiply writer and judge calls, the revision cap of 4 "
                                          "doubles as a cap on cost."},
        "wrong_source": {"at": 6, "cites": [1]},
        "uncited_claim": {"at": 7, "text": "Bad requests that return 400, and well-formed replies that fail the schema, "
                                           "are not the endpoint's fault, and sending them elsewhere would not help."}},
    {"draft": "h18", "pair": ("rope-positional-encoding", "flash-attention"), "sentences": [
        ("This post looks at long sequences from two angles.", []),
        ("RoPE learns no parameters at all.", [1]),
        ("Rather than adding a position vector to the input, it rotates each pair of query and key dimensions by "
         "an angle proportional to the token's position, using a different frequency for each pair.", [1]),
        ("The dot product of a rotated query and key then depends only on how far apart they are, which makes "
         "attention aware of relative position with no lookup table.", [1]),
        ("Since nothing is learned per position, the same weights work at any length; how far the model "
         "extrapolates depends on the distances it saw in training.", [1]),
        ("FlashAttention made sequences of 16K to 64K tokens trainable, and its paper reported about 15% faster "
         "end-to-end BERT-large training and up to 3 times faster GPT-2 training.", [2]),
        ("FlashAttention-2 reorganised the parallelism to reach 50 to 73% of an A100's theoretical FLOPs, roughly "
         "double the first version.", [2]),
        ("FlashAttention-3 relies on Hopper features such as asynchronous copies and FP8.", [2]),
    ],
        "wrong_number": {"at": 6, "text": "FlashAttention-2 reorganised the parallelism to reach 50 to 73% of an A100's "
                                          "theoretical FLOPs, roughly three times the first version."},
        "wrong_source": {"at": 7, "cites": [1]},
        "uncited_claim": {"at": 3, "text": "Because both vectors are rotated, their dot product reflects only the "
                                           "distance between the tokens, giving relative-position awareness without a "
                                           "table."}},
    {"draft": "h19", "pair": ("embedding-model-selection", "hybrid-search-rrf"), "sentences": [
        ("MiniLM and MPNet were compared on pairs drawn from the curriculum's notes.", [1]),
        ("MPNet handled the paraphrase far better, by +0.143, but it also gave a higher score to the misleading "
         "adversarial pair, where MiniLM was safer.", [1]),
        ("Both separated related from unrelated texts equally, at about twice the similarity, which is enough for "
         "retrieval to work but noisy; clean retrieval takes 5x or more.", [1]),
        ("Combining a vector retriever with a keyword one raises a different problem: cosine similarity and a "
         "term-frequency rank are on different scales, so summing them requires calibration.", [2]),
        ("Reciprocal rank fusion, from Cormack, Clarke and Buettcher in 2009, sidesteps that by using only "
         "ranks.", [2]),
        ("Each document scores the sum of 1 / (k + rank) over the rankings, with k = 60 in the original "
         "paper.", [2]),
        ("A document ranked first by one retriever and tenth by the other gets 1/61 + 1/70, about 0.031 "
         "(derived).", [2]),
        ("RRF needs no training and beat both individual rankers and learned fusion on TREC collections.", [2]),
    ],
        "wrong_number": {"at": 5, "text": "Each document scores the sum of 1 / (k + rank) over the rankings, with k = 70 "
                                          "in the original paper."},
        "wrong_source": {"at": 4, "cites": [1]},
        "uncited_claim": {"at": 7, "text": "Rank fusion of this kind is training-free and outperformed single rankers "
                                           "and learned fusion methods on TREC data."}},
    {"draft": "h20", "pair": ("memory-bandwidth-bound-decoding", "speculative-decoding"), "sentences": [
        ("Start with the arithmetic of a single decoding step.", []),
        ("Producing one token for one sequence uses each weight once, roughly 2 FLOPs for every 2-byte bf16 "
         "weight.", [1]),
        ("Each step streams the model's weights from HBM in full, 16.1 GB per token for Llama 3.1 8B.", [1]),
        ("On a 2 TB/s GPU that caps batch-1 decoding at roughly 125 tokens per second, about 8 ms a token.", [1]),
        ("For speculative decoding with acceptance rate alpha and draft length k, the expected tokens per target "
         "pass are (1 - alpha^(k+1)) / (1 - alpha).", [2]),
        ("Setting alpha = 0.8 and k = 4 gives about 3.4 tokens per pass.", [2]),
        ("At the 8 ms floor that would be roughly 425 tokens per second, if the draft cost nothing (derived).",
         [1, 2]),
        ("Leviathan et al. and Chen et al. reported in 2023 that generation ran 2 to 3 times faster on large "
         "models such as T5-XXL and Chinchilla 70B.", [2]),
    ],
        "wrong_number": {"at": 3, "text": "On a 2 TB/s GPU that caps batch-1 decoding at roughly 125 tokens per second, "
                                          "about 8 µs a token."},
        "wrong_source": {"at": 7, "cites": [1]},
        "uncited_claim": {"at": 2, "text": "For Llama 3.1 8B, every step has to read all 16.1 GB of weights out of "
                                           "HBM."}},
]
