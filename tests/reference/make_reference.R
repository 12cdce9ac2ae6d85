# Reference values from R for tests/test_stats_reference.py (issue 15): run on tests/reference/reference_data.csv,
# writes tests/reference/r_reference.csv (key,value). CI does not need R: the numbers are committed.
#
#   Rscript tests/reference/make_reference.R      (Debian: r-base-core 4.2, r-cran-proc 1.18, r-cran-rms 6.5)
suppressPackageStartupMessages({library(pROC); library(rms)})
here <- dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)))
d <- read.csv(file.path(here, "reference_data.csv"), stringsAsFactors = FALSE)
classes <- c("normal", "osteopenia", "osteoporosis")
out <- list()
put <- function(key, value) out[[key]] <<- value
clip_logit <- function(p) qlogis(pmin(pmax(p, 1e-6), 1 - 1e-6))
roc_of <- function(y, s) roc(response = y, predictor = s, levels = c(FALSE, TRUE), direction = "<", quiet = TRUE)
tight <- glm.control(epsilon = 1e-14, maxit = 100)  # R's default 1e-8 stops ~1e-6 short of the maximum
predicted <- max.col(as.matrix(d[, paste0("p_", classes)]), ties.method = "first") - 1

for (k in 0:2) {
  name <- classes[k + 1]
  y <- as.integer(d$y == k)
  p <- d[[paste0("p_", name)]]
  x <- clip_logit(p)
  # calibration intercept: y ~ 1 + offset(logit p); slope: y ~ logit p; Wald intervals (confint.default)
  fi <- glm(y ~ 1, offset = x, family = binomial, control = tight)
  put(paste0(name, ".intercept"), coef(fi)[[1]])
  put(paste0(name, ".intercept_se"), sqrt(vcov(fi)[1, 1]))
  put(paste0(name, ".intercept_lo"), confint.default(fi)[1, 1])
  put(paste0(name, ".intercept_hi"), confint.default(fi)[1, 2])
  fs <- glm(y ~ x, family = binomial, control = tight)
  put(paste0(name, ".slope"), coef(fs)[[2]])
  put(paste0(name, ".slope_se"), sqrt(vcov(fs)[2, 2]))
  put(paste0(name, ".slope_lo"), confint.default(fs)[2, 1])
  put(paste0(name, ".slope_hi"), confint.default(fs)[2, 2])
  put(paste0(name, ".val_prob_slope"), val.prob(p, y, pl = FALSE)[["Slope"]])
  # flexible calibration: lrm on rcs(logit p) with knots at the 5/35/65/95th percentiles, fitted at 101 points
  knots <- quantile(x, c(0.05, 0.35, 0.65, 0.95), names = FALSE)
  fit <- lrm(y ~ rcs(x, knots))
  grid <- seq(quantile(p, 0.01, names = FALSE), quantile(p, 0.99, names = FALSE), length.out = 101)
  fitted <- predict(fit, data.frame(x = clip_logit(grid)), type = "fitted")
  for (i in seq_along(grid)) put(sprintf("%s.flexible.%03d", name, i - 1), fitted[[i]])
  # Wilson intervals (prop.test without continuity correction) of sensitivity, specificity, PPV, NPV
  pos <- predicted == k
  case <- y == 1
  counts <- list(sensitivity = c(sum(pos & case), sum(case)), specificity = c(sum(!pos & !case), sum(!case)),
                 ppv = c(sum(pos & case), sum(pos)), npv = c(sum(!pos & !case), sum(!pos)))
  for (m in names(counts)) {
    ci <- prop.test(counts[[m]][1], counts[[m]][2], correct = FALSE)$conf.int
    put(sprintf("%s.%s_lo", name, m), ci[1])
    put(sprintf("%s.%s_hi", name, m), ci[2])
  }
  # DeLong's test for two independent ROC curves: women vs men
  f <- d$sex == "F"
  t <- roc.test(roc_of(case[f], p[f]), roc_of(case[!f], p[!f]), method = "delong", paired = FALSE)
  put(paste0(name, ".sex_z"), unname(t$statistic))
  put(paste0(name, ".sex_p"), t$p.value)
  put(paste0(name, ".sex_df"), unname(t$parameter))
  put(paste0(name, ".sex_auc_f"), unname(t$estimate[1]))
  put(paste0(name, ".sex_auc_m"), unname(t$estimate[2]))
  # paired DeLong test of model p against model q on the same patients
  q <- d[[paste0("q_", name)]]
  t <- roc.test(roc_of(case, p), roc_of(case, q), method = "delong", paired = TRUE)
  put(paste0(name, ".paired_z"), unname(t$statistic))
  put(paste0(name, ".paired_p"), t$p.value)
  # DeLong variance of each centre's AUC (for Cochran's Q across centres)
  for (centre in sort(unique(d$center))) {
    r <- roc_of(case[d$center == centre], p[d$center == centre])
    put(sprintf("%s.centre_%s_auc", name, centre), as.numeric(auc(r)))
    put(sprintf("%s.centre_%s_var", name, centre), var(r, method = "delong"))
  }
}
values <- unlist(out)
write.csv(data.frame(key = names(values), value = sprintf("%.17g", values)), file.path(here, "r_reference.csv"),
          row.names = FALSE, quote = FALSE)
cat("wrote", length(values), "values\n")
