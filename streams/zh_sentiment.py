# ruff: noqa: RUF001, RUF003  (Chinese text is written with full-width punctuation, on purpose)
"""Chinese sentiment of short CX feedback: jieba segmentation over a lexicon written for it.

Why not SnowNLP (the earlier analyser): it is trained on shopping reviews, loads ~420 MiB
and reads every text as a polarity (a question about a fee comes out strongly negative or
positive), and its ``2p - 1`` was put on VADER's scale without calibration. This scorer
uses the words customers of banks, retailers and telcos complain and praise with, VADER's
rules (a negator within three words turns a word and damps it by 0.74, a degree adverb
strengthens it, a clause after "but" weighs more) and VADER's normalisation
``s / sqrt(s² + 15)``, so a Chinese compound means what an English one does. jieba
segments with a dictionary of this lexicon's words only (plus its HMM for the rest): the
full jieba dictionary would add ~80 MiB to find words the scorer has no use for.

docs/scoring.md ("Feedback text") has the accuracy of both on the labelled set
(tests/data/feedback_zh.jsonl) and the memory each takes.
"""

from __future__ import annotations

import io
import logging
import math
import re
from typing import Any

#: Words and phrases read as positive (valence 2) and negative (valence -2); a ``!`` in
#: front makes one strong (3). Space-separated. Keep each list sorted by theme.
POSITIVE = """
好 很好 不错 挺好 好用 好评 满意 非常满意 喜欢 很喜欢 爱 推荐 点赞 赞 棒 很棒 优秀 完美
快 很快 及时 迅速 高效 便捷 方便 简单 简单明了 流畅 顺利 清楚 明白 稳定 正常 恢复 恢复正常
热情 热心 亲切 耐心 礼貌 周到 专业 用心 贴心 友好 客气 负责 靠谱 放心 安心 省心 给力
感谢 谢谢 多谢 辛苦 帮了大忙 解决 解决了 搞定 修好 更正 退回 退回来 免 免了 免费 免手续费
公道 实惠 划算 优惠 准时 按时 没问题 没出问题 没什么可挑剔 好多了 好了 短了 惊喜 开心 高兴
满分 马上 太棒了 好极了 真厉害 真开心 物超所值
"""
NEGATIVE = """
差 很差 太差 !糟糕 !太糟糕 失望 !非常失望 不满 投诉 生气 愤怒 !气死 烦 !烦死 烦人 郁闷 无语
!恶心 !垃圾
!最差 !坑 !骗 欺骗 忽悠 荒唐 !离谱 !太离谱 过分 无法接受 不能接受 受不了 尴尬 莫名其妙
!再也不
慢 太慢 很慢 卡 卡顿 卡死 !闪退 崩溃 崩 报错 错误 出错 故障 失败 异常 白屏 超时 转圈 打不开
用不了 登录不上 查不了 提交不了 打不通 打不进去 断线 掉线 断网 没信号 信号差 不稳定
!吞卡 吞 冻结 锁了 被锁 停用 没出钞 不出钞 不吐钞 没出钱 没吐 现金不足 没钱了 扣款 扣了 扣钱
!重复扣款 多扣 多收 乱收费 !隐藏收费 收费 手续费 罚息 滞纳金 贵 太贵 涨 涨价
晚到 延误 没收到 收不到 丢 丢了 送错 破 破损 淋雨 取消 没到 没人 没人理 没人搭理 不管 敷衍
推诿 踢皮球
态度差 恶劣 !态度恶劣 傲慢 凶 冷漠 不耐烦 不专业 翻白眼 强行 推销 挂 挂了 念 照着 话术 等了
久 很久 半天 排队 长队 排长队
问题 麻烦 难 困难 不方便 不清楚 解释不清 不够 不够好 不怎么样 坏 坏了 裂 裂了 看不清 销户
没用
错 错了 不存在 断 断了 耗 扣 扣我
"""
#: Words kept whole by the segmenter, with no valence of their own ("快递" is not "快"
#: (fast) + "递"; "等待时间" is not "等" (waiting) twice).
NEUTRAL = """
快递 快递员 快递小哥 快捷支付 网点 营业厅 客服 人工客服 银行卡 信用卡 借记卡 账户 网银
手机银行
转账 取款机 宽带 话费 账单 工作人员 等待 等候 等待时间 等候时间 好听 好像 一般般 差不多
不用说
"""
#: Positive words said of a complaint ("太棒了，APP又崩溃了"): read negative when the text
#: also holds a negative word.
IRONY = "呵呵 好极了 太棒了 真厉害 真开心 物超所值 谢谢你们 真是 好吧"
#: Words that turn the next three: "不满意", "没有问题", "一点都不凶".
NEGATORS = (
    "不用 不 没 没有 未 别 无 并不 从不 从来不 从来没 从来没有 从没 毫无 不是 不太 不算 "
    "一点也不 一点都不"
)
#: Degree adverbs and their factor, applied to the word they precede (within three words).
DEGREE = {
    "很": 1.3,
    "非常": 1.5,
    "太": 1.5,
    "特别": 1.4,
    "十分": 1.4,
    "极": 1.5,
    "超": 1.4,
    "真": 1.3,
    "最": 1.5,
    "好": 1.2,
    "挺": 1.1,
    "更": 1.2,
    "越来越": 1.3,
    "又": 1.2,
    "老": 1.2,
    "一直": 1.2,
    "总是": 1.2,
    "根本": 1.4,
    "有点": 0.7,
    "有些": 0.7,
    "稍": 0.7,
    "略": 0.7,
}
#: Words that open the clause that counts most ("但是服务很差", "现在好了"): its words
#: weigh 1.5, the clauses before it 0.5 (VADER's rule for "but").
BUT = ("但是", "但", "可是", "不过", "却", "结果", "现在", "如今")
#: A question or a request ("请问手续费多少？", "能不能减免滞纳金") states no experience:
#: one plain word in it reads neutral, more is halved.
_QUESTION = re.compile(r"[？?]|吗|请|想问|问一下|能不能|可不可以|是不是|有没有")
_CLAUSE = re.compile(r"[，,。.!！?？;；、\n]+")
_ALPHA = 15.0
_NEGATION = -0.74


def _words(text: str) -> tuple[dict[str, float], set[str]]:
    lexicon: dict[str, float] = {}
    for sign, block in ((1.0, POSITIVE), (-1.0, NEGATIVE)):
        for word in block.split():
            strong = word.startswith("!")
            lexicon[word.lstrip("!")] = sign * (3.0 if strong else 2.0)
    return lexicon, set(text.split())


LEXICON, IRONY_WORDS = _words(IRONY)
NEGATOR_WORDS = set(NEGATORS.split())


def normalise(score: float) -> float:
    """VADER's compound normalisation: -1..1, ±2 (one plain word) reads ±0.46."""
    return max(-1.0, min(1.0, score / math.sqrt(score * score + _ALPHA)))


class ChineseLexiconSentiment:
    """Compound sentiment (-1..1) of Chinese text; 0.0 when it holds no opinion word."""

    def __init__(self) -> None:
        import jieba

        jieba.setLogLevel(logging.WARNING)
        words = sorted(
            {*LEXICON, *IRONY_WORDS, *NEGATOR_WORDS, *DEGREE, *BUT, *NEUTRAL.split()},
            key=lambda w: (-len(w), w),
        )
        # A dictionary of our words only, each frequent enough to be kept whole, built in
        # memory: jieba would otherwise read it from a file and cache it in the temp dir.
        entries = "".join(f"{word} {1000 * len(word)}\n" for word in words)
        self._tokenizer: Any = jieba.Tokenizer()
        freq, total = self._tokenizer.gen_pfdict(io.BytesIO(entries.encode("utf-8")))
        self._tokenizer.FREQ, self._tokenizer.total = freq, total
        self._tokenizer.initialized = True

    def tokens(self, text: str) -> list[str]:
        return [t for t in self._tokenizer.lcut(text) if t.strip()]

    def clause_score(self, clause: str) -> float:
        """The raw sum of one clause's valences (before normalisation)."""
        toks = self.tokens(clause)
        total = 0.0
        for i, tok in enumerate(toks):
            v = LEXICON.get(tok)
            if v is None:
                continue
            for back in range(max(0, i - 3), i):
                prev = toks[back]
                if prev in NEGATOR_WORDS:
                    v *= _NEGATION
                elif prev in DEGREE:
                    v *= DEGREE[prev]
            total += v
        return total

    def raw(self, text: str) -> float:
        clauses = [c for c in _CLAUSE.split(text) if c.strip()]
        scores = [self.clause_score(c) for c in clauses]
        for i, clause in enumerate(clauses):
            if i and clause.startswith(BUT):
                scores = [s * 0.5 for s in scores[:i]] + [s * 1.5 for s in scores[i:]]
        total = sum(scores)
        irony = [w for w in IRONY_WORDS if w in text]
        if irony and any(s < 0 for s in scores):
            # praise said of a complaint: take the praise back, and count it against
            total -= sum(2.0 * abs(LEXICON.get(w, 2.0)) for w in irony)
        if _QUESTION.search(text):
            total = 0.0 if abs(total) <= 2.0 else total * 0.5
        return total

    def score(self, text: str) -> float:
        return normalise(self.raw(text))
