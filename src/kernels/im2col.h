/* im2col / col2im for one NCHW image: the bridge between a convolution and
 * a matrix product. Column matrix layout: rows (channel, kh, kw) in the
 * order of PyTorch's weight [out, in, kh, kw], columns the output pixels. */
#ifndef ST_KERNELS_IM2COL_H
#define ST_KERNELS_IM2COL_H

/* col (channels*kernel*kernel, out_h*out_w) = patches of x (channels, h, w);
 * positions in the zero padding are written as 0 (overwrites col). */
void st_im2col(const float *x, int channels, int h, int w, int kernel, int stride, int padding, int out_h, int out_w,
               float *col);
/* dx (channels, h, w) += scatter of col (channels*kernel*kernel, out_h*out_w);
 * entries that fall in the padding are dropped. */
void st_col2im_add(const float *col, int channels, int h, int w, int kernel, int stride, int padding, int out_h,
                   int out_w, float *dx);

/* Output columns o in [*lo, *hi) read input column o*stride - padding + offset
 * inside [0, w) (the part of an output row that needs no padding). */
void st_im2col_valid_range(int w, int out_w, int stride, int padding, int offset, int *lo, int *hi);

#endif
