#!/usr/bin/env bash
# The EAGLE-3 drafters of the embedded target, start to finish: the self-distillation corpus,
# the general EAGLE-3 head, its draft-vocabulary measurement, the domain experts, and the
# held-out benchmark. Every step resumes from its own shards or checkpoints (under
# ~/.cache/specsel/train/smollm2-135m-instruct, or $WORK): after a kill, rerun this script and
# it goes on where it stopped. Hours of CPU in all; each step is niced and single-threaded so
# that it shares the machine.
#
#   DATA=../shared/data bash recipes/train_default_pool.sh
set -euo pipefail
DATA=${DATA:-../shared/data}
W=${W:-drafters/weights/smollm2-135m-instruct}
RESULTS=${RESULTS:-results}
RUN="nice -n 19 python"
DOMAINS=math,humaneval,medqa,code_instruct,pubmedqa,sql,summarization
WORK_FLAG=${WORK:+--work $WORK}

# 1. the target's greedy answers (128 tokens) to 512 training prompts per domain, with its features
$RUN recipes/self_distill.py --data-dir "$DATA" --domains $DOMAINS --prompts 512 --batch-size 32 \
    --max-new-tokens 128 --threads 1 $WORK_FLAG
# 2. the general EAGLE-3 head on every domain's answers (the held-out shard of each stays out)
$RUN recipes/train_eagle.py --data-dir "$DATA" --domains $DOMAINS --draft-vocab 8192 --steps 2000 \
    --eval-prompts 5 --threads 1 --out "$W/eagle3" $WORK_FLAG
# 3. the draft vocabulary's size: coverage, and the head restricted to smaller vocabularies on tuning queries
$RUN recipes/draft_vocab.py --data-dir "$DATA" --head "$W/eagle3" --sizes 1024,2048,4096,8192 --prompts 5 \
    --threads 1 --json "$RESULTS/draft_vocab.json" $WORK_FLAG
# 4. experts: LoRA on the head, each on its own domain's answers
for pair in math:math humaneval:code medqa:medical sql:sql summarization:summarization; do
    $RUN recipes/train_eagle3_expert.py --data-dir "$DATA" --domain "${pair%%:*}" --base "$W/eagle3" \
        --steps 300 --threads 1 --out "$W/eagle3_lora/${pair##*:}" $WORK_FLAG
done
# 5. held-out benchmark (prompts 50+, batch 1, gamma 4, greedy): MAT, tokens/s, speedup, draft ms, verify cost
$RUN recipes/bench_drafters.py --data-dir "$DATA" --skip 50 --prompts 20 --gammas 4 \
    --drafters ngram,eagle,eagle3,eagle3_math,eagle3_code,eagle3_medical --json "$RESULTS/bench_drafters_eagle3.json"
