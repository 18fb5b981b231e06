"""The studies: one layer on top of every library package (compiler, programs, data, estimator, training).

complexity (question 1), training and grokking (question 2), ablations (question 3), and `main`, the job behind
`make results`. Nothing below imports this package.
"""
